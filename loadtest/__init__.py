"""Load tests of the sign-in service: Locust scenarios and a local runner.

`loadtest/locustfile.py` holds the Locust users, for `locust -f` against any base
URL, alone or as master and workers. `python -m loadtest` starts the stand-in and
the service on free loopback ports, runs one short headless scenario against them
and prints a summary. Only ever aim it at servers you run yourself.
"""
