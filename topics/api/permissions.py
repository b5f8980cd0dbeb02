"""The caller's role on a topic: the 403 gates, checked after the topic is found and before the body is read.

The topic object comes from ``selectors.topic_for_caller``, annotated with
``caller_camp``. The services repeat these checks under the topic lock.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from topics.errors import NotADebater, NotTheJudge
from topics.models import CampName, Topic


class IsDebater(BasePermission):
    message = NotADebater.default_detail
    code = NotADebater.code

    def has_object_permission(self, request: Request, view, obj: Topic) -> bool:
        return obj.caller_camp in (CampName.PRO, CampName.CON)


class IsJudge(BasePermission):
    message = NotTheJudge.default_detail
    code = NotTheJudge.code

    def has_object_permission(self, request: Request, view, obj: Topic) -> bool:
        return obj.caller_camp == CampName.JUDGE
