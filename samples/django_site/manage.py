#!/usr/bin/env python
"""Django's command line for the sample site (``migrate``, ``createsuperuser``, ``check``).

Run it with the same environment as the server (``set -a; . samples/django.env; set +a`` and
``DJANGO_SECRET_KEY``), so ``migrate`` writes the database the server will read.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
