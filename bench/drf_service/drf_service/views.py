"""`GET /api/v1/me` behind HasAPIKey, and `/healthz` doing SELECT 1: the two endpoints measured."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import JsonResponse
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey


class HasAPIKeyKeepingKey(HasAPIKey):
    """HasAPIKey's exact check (manager.get_from_key, then has_expired), keeping the key it found.

    The library's documented way to read the key in a view is a second get_from_key() (a second
    query and hash); keeping the first one is the faster variant, so DRF is measured at its best.
    """

    def has_permission(self, request, view) -> bool:
        key = self.get_key(request)
        if not key:
            return False
        try:
            api_key = self.model.objects.get_from_key(key)
        except self.model.DoesNotExist:
            return False
        if api_key.has_expired:
            return False
        request.api_key = api_key
        return True


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


class MeView(APIView):
    permission_classes = (HasAPIKeyKeepingKey,)

    def get(self, request):
        key = request.api_key
        return Response({
            "token": {
                "id": key.prefix,  # key.id embeds the hash
                "name": key.name,
                "revoked": key.revoked,
                "created_at": _iso(key.created),
                "expires_at": _iso(key.expiry_date),
                "status": "active",
            },
            "service": {"name": "drf-bench", "authentication": "djangorestframework-api-key"},
        })


def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})
