from django.urls import path

from djsite import views

urlpatterns = [
    path("async/", views.async_info, name="async-info"),
    path("sync/", views.sync_info, name="sync-info"),
]
