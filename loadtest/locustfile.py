r"""Locust users that sign in to the service, in four scenarios.

    locust -f loadtest/locustfile.py --headless -u 50 -r 50 -t 30s \
        --host http://127.0.0.1:8080 --scenario mixed

- `warm`: a small population signs in again and again; every answer after the
  first of each user comes from the service's caches.
- `storm`: every Locust user is a different cold user arriving at once; each
  signs in once (following `Retry-After` on a 503, a few times at most) and
  leaves. The run ends when all have, or at `--run-time`. With `--population P`,
  storm users take turns over P cold user ids, so each of them arrives several
  times at once (on several replicas, with `--replica-hosts`).
- `mixed`: repeat sign-ins whose users follow a Zipf law over the population.
- `fault`: `mixed` while the stand-in injects faults, set through its admin
  endpoint `PUT /_standin/faults` when the test starts and restored when it stops.

Tokens are minted here, once per user id, with the local identity provider's key
(`.local/`) for `config/local.env`'s issuer and audience. User ids carry a tag
chosen by the master, so each run starts cold. Distributed mode works as usual
(`--master` and `--worker`); every worker needs the same key directory. With
`--replica-hosts URL,URL,...` each Locust user picks one of these replicas at
random and keeps it (`--host` is then only the default). Aim it only at services
you run yourself.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from locust import FastHttpUser, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsError

from loadtest.population import TokenBook, ZipfRanks, local_token_book
from standin.faults import FaultError, merge_options
from standin.local_config import KEY_DIRECTORY

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from locust.env import Environment
    from locust.event import EventHook
    from locust.rpc import Message

__all__ = ["SignInUser", "add_arguments"]

logger = logging.getLogger("loadtest")

SCENARIOS: Final = ("warm", "storm", "mixed", "fault")
DEFAULT_POPULATIONS: Final = {"warm": 20, "mixed": 10_000, "fault": 10_000}
DEFAULT_FAULTS: Final = "*:latency=exponential:0.02,throttle=0.1,server_error=0.1"
SIGN_IN_PATH: Final = "/v1/sign-in"

# A storm user tries a few times at most, so a storm always ends.
_STORM_ATTEMPTS: Final = 3
# Retry-After is followed up to this long, so a run never stalls on it.
_MAX_BACKOFF_SECONDS: Final = 5.0
_ADMIN_TIMEOUT_SECONDS: Final = 5.0
_STORM_FINISHED: Final = "storm-user-finished"


def _listen(hook: EventHook) -> Callable[[Callable[..., None]], object]:
    """Return `hook.add_listener` typed: locust leaves it unannotated."""
    add_listener: Callable[[Callable[..., None]], object] = hook.add_listener
    return add_listener


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scenario's options to Locust's command line (and web UI)."""
    parser.add_argument(
        "--scenario", choices=SCENARIOS, default="mixed", help="what the users do"
    )
    parser.add_argument(
        "--population",
        type=int,
        default=0,
        help="distinct user ids for warm, mixed and fault (0: 20 for warm, "
        "10000 otherwise); a storm has one user id per Locust user, or takes "
        "turns over this many",
    )
    parser.add_argument(
        "--replica-hosts",
        default="",
        help="comma-separated base URLs of replicas; each Locust user picks one "
        "(default: --host only)",
    )
    parser.add_argument(
        "--zipf-exponent", type=float, default=1.1, help="skew of mixed and fault"
    )
    parser.add_argument(
        "--think-time",
        type=float,
        default=0.0,
        help="seconds each user waits between sign-ins (default: none)",
    )
    parser.add_argument(
        "--standin-url",
        default="http://127.0.0.1:4580",
        help="the stand-in whose faults the fault scenario sets",
    )
    parser.add_argument(
        "--faults",
        default=DEFAULT_FAULTS,
        help="the fault scenario's plan in the stand-in's --fault syntax; "
        "several separated by ';'",
    )
    parser.add_argument(
        "--key-directory",
        default=str(KEY_DIRECTORY),
        help="where the local identity provider's signing key is",
    )
    parser.add_argument(
        "--record-file",
        default="",
        help="write the final figures here as JSON when Locust quits (master "
        "or single process)",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--run-tag",
        default=secrets.token_hex(4),
        help="part of every user id; the master's is used everywhere",
        include_in_web_ui=False,
    )


class Population:
    """This process's view of the scenario: whose turn it is and their token."""

    def __init__(self, options: argparse.Namespace, worker_index: int) -> None:
        self.scenario: str = options.scenario
        self.think_time: float = options.think_time
        self._tag = f"{options.scenario}-{options.run_tag}"
        self._worker = max(worker_index, 0)
        self._tokens: TokenBook = local_token_book(
            key_directory=Path(options.key_directory)
        )
        self._rng = random.Random()  # noqa: S311 -- picks users, not secrets
        self._storm_count = 0
        self._storm_population: int = options.population
        self._replica_hosts: list[str] = [
            host.strip().rstrip("/")
            for host in options.replica_hosts.split(",")
            if host.strip()
        ]

        population = options.population or DEFAULT_POPULATIONS.get(self.scenario, 1)
        self._population = population
        self._ranks = ZipfRanks(population, options.zipf_exponent, self._rng)

    def next_user_id(self) -> str:
        """Return the user id of the next sign-in of a warm, mixed or fault user."""
        if self.scenario == "warm":
            rank = self._rng.randrange(self._population)
        else:
            rank = self._ranks.draw()

        return f"{self._tag}-{rank}"

    def new_storm_user_id(self) -> str:
        """Return a user id no one has used before, or the next of the population."""
        self._storm_count += 1
        if self._storm_population:
            return f"{self._tag}-{self._storm_count % self._storm_population}"

        return f"{self._tag}-w{self._worker}-{self._storm_count}"

    def replica_host(self, default: str) -> str:
        """Return the base URL a new Locust user loads: a replica, or `default`."""
        if not self._replica_hosts:
            return default

        return self._rng.choice(self._replica_hosts)

    def token_for(self, user_id: str) -> str:
        """Return the user's token."""
        return self._tokens.token_for(user_id)


_population: Population | None = None


def population_of(environment: Environment) -> Population:
    """Return this process's population, built from the options on first use."""
    global _population  # noqa: PLW0603 -- one per Locust process, built lazily

    if _population is None:
        runner = environment.runner
        worker_index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        _population = Population(_options(environment), worker_index)

    return _population


class SignInUser(FastHttpUser):
    """A chat client signing in with its user's token."""

    host = "http://127.0.0.1:8080"

    def __init__(self, environment: Environment) -> None:
        # Before the client is made, which takes its base URL from `host`.
        self.host = population_of(environment).replica_host(self.host)
        super().__init__(environment)
        self._backoff = 0.0

    def wait_time(self) -> float:
        """Wait the think time, or longer when the service said `Retry-After`."""
        backoff, self._backoff = self._backoff, 0.0

        return max(population_of(self.environment).think_time, backoff)

    @task
    def sign_in(self) -> None:
        """Sign in as the scenario's next user."""
        population = population_of(self.environment)

        if population.scenario == "storm":
            self._storm_once(population)
        else:
            self._post(population.token_for(population.next_user_id()))

    def _storm_once(self, population: Population) -> None:
        """Sign in as a new user, retrying a 503 a few times, then leave."""
        token = population.token_for(population.new_storm_user_id())

        for _attempt in range(_STORM_ATTEMPTS):
            if self._post(token) != 503:
                break
            time.sleep(self._backoff)  # cooperative: Locust patches time.sleep
            self._backoff = 0.0

        _storm_user_finished(self.environment)
        raise StopUser

    def _post(self, token: str) -> int:
        """Send one sign-in; count anything but a 200 as a failure, by status."""
        with self.client.post(
            SIGN_IN_PATH,
            headers={"Authorization": f"Bearer {token}"},
            name=SIGN_IN_PATH,
            catch_response=True,
        ) as response:
            status: int = response.status_code
            if status == 200:
                response.success()
            elif status:
                response.failure(f"HTTP {status}")
                retry_after = response.headers and response.headers.get("Retry-After")
                self._backoff = _backoff_for(status, retry_after)
            else:
                error = getattr(response, "error", None)
                response.failure(f"no HTTP answer: {type(error).__name__}")

        return status


def _backoff_for(status: int, retry_after: str | None) -> float:
    """Read `Retry-After` in seconds from a 503, capped; 0 when absent."""
    if status != 503 or not retry_after:
        return 0.0

    try:
        return min(float(retry_after), _MAX_BACKOFF_SECONDS)
    except ValueError:
        return 0.0


_storm_finished_count = 0


def _storm_user_finished(environment: Environment) -> None:
    """Count one storm user done; the last one ends the test."""
    runner = environment.runner

    if isinstance(runner, WorkerRunner):
        runner.send_message(_STORM_FINISHED, {"users": 1})
    elif runner is not None:
        _count_storm_user(environment, 1)


def _count_storm_user(environment: Environment, users: int) -> None:
    """Add finished storm users; quit once every spawned user has finished."""
    global _storm_finished_count  # noqa: PLW0603 -- one count per Locust process

    _storm_finished_count += users
    runner = environment.runner
    expected = _options(environment).num_users or 0

    if runner is not None and 0 < expected <= _storm_finished_count:
        logger.info("every storm user has signed in; stopping")
        # Not from this user's greenlet, which quitting kills.
        runner.greenlet.spawn(runner.quit)


def _on_init(environment: Environment, **_kwargs: object) -> None:
    """Let the master count the storm users its workers report finished."""
    runner = environment.runner

    if isinstance(runner, MasterRunner):
        runner.register_message(_STORM_FINISHED, _on_storm_users_finished)


def _on_storm_users_finished(environment: Environment, msg: Message) -> None:
    """Count the storm users a worker reports finished."""
    _count_storm_user(environment, int(msg.data["users"]))


_saved_faults: dict[str, Any] | None = None
_started_at: float | None = None


def _on_test_start(environment: Environment, **_kwargs: object) -> None:
    """Note when the test starts, and turn the fault scenario's faults on.

    Both happen on the master or the single process only, never on workers.
    """
    global _saved_faults, _started_at  # noqa: PLW0603 -- read when stopping

    if isinstance(environment.runner, WorkerRunner):
        return

    _started_at = time.time()
    options = _options(environment)
    if options.scenario != "fault":
        return

    url = f"{options.standin_url.rstrip('/')}/_standin/faults"
    try:
        specs = merge_options(part.strip() for part in options.faults.split(";"))
        _saved_faults = _admin(url, "GET")
        plan = {api: spec.to_json() for api, spec in specs.items()}
        applied = _admin(url, "PUT", {"faults": plan})
    except (FaultError, OSError, ValueError) as error:
        # A fault scenario without faults would measure the wrong thing: stop.
        logger.error("cannot set the stand-in's faults at %s: %s", url, error)  # noqa: TRY400 -- the cause is in the message
        environment.process_exit_code = 2
        runner = environment.runner
        if runner is not None:
            runner.greenlet.spawn(runner.quit)
        return

    logger.info("stand-in faults on: %s", json.dumps(applied["faults"]))


def _on_test_stop(environment: Environment, **_kwargs: object) -> None:
    """Put the stand-in's faults back as they were before the fault scenario."""
    global _saved_faults  # noqa: PLW0603 -- set by the start listener

    if _saved_faults is None or isinstance(environment.runner, WorkerRunner):
        return

    url = f"{_options(environment).standin_url.rstrip('/')}/_standin/faults"
    _admin(url, "PUT", {"faults": _saved_faults.get("faults", {})})
    _saved_faults = None
    logger.info("stand-in faults restored")


def _on_quitting(environment: Environment, **_kwargs: object) -> None:
    """Write the final figures for `--record-file`, once the runner has stopped.

    Locust's CSV files are rewritten once a second and can miss the last one;
    this record is taken from the same totals as its final report.
    """
    options = _options(environment)
    runner = environment.runner
    if not options.record_file or runner is None or isinstance(runner, WorkerRunner):
        return

    total = runner.stats.total
    record = {
        "scenario": options.scenario,
        "users": options.num_users,
        "started_at": _started_at,
        "last_request_at": total.last_request_timestamp,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "response_times_ms": {
            str(milliseconds): count
            for milliseconds, count in sorted(total.response_times.items())
        },
        "errors": [
            {
                "error": StatsError.parse_error(error.error),
                "occurrences": error.occurrences,
            }
            for error in runner.stats.errors.values()
        ],
    }
    Path(options.record_file).write_text(json.dumps(record, indent=2) + "\n")


def _admin(url: str, method: str, document: object = None) -> dict[str, Any]:
    """Call the stand-in's admin endpoint, straight to it whatever the proxies."""
    body = None if document is None else json.dumps(document).encode()
    request = urllib.request.Request(  # noqa: S310 -- the URL the user named
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    with opener.open(request, timeout=_ADMIN_TIMEOUT_SECONDS) as response:
        answer: dict[str, Any] = json.loads(response.read())

    return answer


def _options(environment: Environment) -> argparse.Namespace:
    """Return the parsed options, which Locust always sets for a command-line run."""
    options: argparse.Namespace | None = environment.parsed_options
    if options is None:
        raise RuntimeError("run this locustfile with the locust command")

    return options


_listen(events.init_command_line_parser)(add_arguments)
_listen(events.init)(_on_init)
_listen(events.test_start)(_on_test_start)
_listen(events.test_stop)(_on_test_stop)
_listen(events.quitting)(_on_quitting)
