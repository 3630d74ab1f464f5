from django.apps import AppConfig


class LoansConfig(AppConfig):
    name = "examples.django_lending.loans"
    label = "loans"
