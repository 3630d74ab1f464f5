from django.urls import include, path

urlpatterns = [path("freshlink/", include("freshlink.contrib.django.urls"))]
