"""URL routes of the luci console (the console's pages arrive in step 6)."""
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
