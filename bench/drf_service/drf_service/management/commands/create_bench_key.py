"""`manage.py create_bench_key NAME`: create an API key and print only the key (for bench/run.py)."""

from django.core.management.base import BaseCommand
from rest_framework_api_key.models import APIKey


class Command(BaseCommand):
    help = "Create an API key and print it on stdout."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, **options):
        _, key = APIKey.objects.create_key(name=options["name"])
        self.stdout.write(key)
