from django.urls import path

from drf_service import views

urlpatterns = [
    path("api/v1/me", views.MeView.as_view()),
    path("healthz", views.healthz),
]
