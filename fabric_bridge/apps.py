from django.apps import AppConfig


class FabricBridgeConfig(AppConfig):
    name = "fabric_bridge"
    verbose_name = "Fabric announcements"
