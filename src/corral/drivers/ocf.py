"""Driver for ``ocf:`` resources: an OCF resource agent (Debian ``resource-agents``).

Contract (in addition to :mod:`corral.drivers.base`):

- The agent ``provider:type`` is the executable ``<ocf_root>/resource.d/<provider>/<type>``,
  run as ``<agent> <action>`` with ``OCF_ROOT``, ``OCF_RA_VERSION_MAJOR/MINOR`` (1.1),
  ``OCF_RESOURCE_INSTANCE`` (the resource name), ``OCF_RESOURCE_TYPE``,
  ``OCF_RESOURCE_PROVIDER``, ``OCF_RESKEY_<param>=<value>`` for each spec parameter (strings
  rendered with :meth:`NodeContext.render`, booleans as ``true``/``false``), plus Pacemaker's
  ``OCF_RESKEY_CRM_meta_timeout`` (ms) and ``OCF_RESKEY_CRM_meta_interval`` (ms; 0 for a probe)
  that many agents read. Only ``PATH``, ``LANG`` and ``LC_ALL`` come from the agent's own
  environment.
- Before the first action the agent's ``meta-data`` is read and parsed once: unknown
  parameters and missing required ones are refused with one DriverError naming them all. An
  agent that is not installed raises DriverError from start()/promote()/demote(); status()
  reports it as ``stopped`` (nothing can run through it), stop() succeeds (likewise).
- Each action is killed after its timeout: the ``timeouts`` override, else the agent's
  advised timeout from meta-data, else ``default_timeout``. A timeout is a failure.
- Exit codes: 0 OCF_SUCCESS, 1 ERR_GENERIC, 2 ERR_ARGS, 3 ERR_UNIMPLEMENTED, 4 ERR_PERM,
  5 ERR_INSTALLED, 6 ERR_CONFIGURED, 7 NOT_RUNNING, 8 RUNNING_PROMOTED, 9 FAILED_PROMOTED.
  ``monitor`` maps to status: 0 running, 7 stopped, 8 running + promoted, 1-6 and 9 failed
  (9 with ``promoted=True``), anything else failed.
- **start()** succeeds when ``start`` returns 0 *and* a probe monitor then says running. On
  any other outcome it stops the instance (best effort: an instance is never left
  half-started) and raises DriverError with the rc name and the agent's last output lines.
- **stop()** demotes first when the agent is promotable and the instance is promoted (an OCF
  agent may refuse to stop a promoted instance, as ``Stateful`` does); ``stop`` rc 0 (or 7,
  which some agents return for an instance that was not running) is success.
- **adopt()** probes (monitor, interval 0) and is True for rc 0 or 8.
- A parameter that is a secret reference (``password: {file: ...}``) is resolved at every
  action but meta-data and passed in the environment only; the agent's output is redacted of
  it before it is logged or put into an error (:mod:`corral.drivers.secrets`).
- Every action but a routine monitor (rc 0, 7, 8) is appended, with its output, to
  ``<state_dir>/logs/<name>.log``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from corral.drivers import _files
from corral.drivers._exec import CommandTimeout, Completed, run_command
from corral.drivers.base import DriverError, DriverStatus, NodeContext
from corral.drivers.ocf_meta import OcfMetadata, check_params, parse_metadata
from corral.drivers.secrets import redact, resolve
from corral.spec.model import OcfDriver as OcfSpec
from corral.spec.secrets import SecretRef

DEFAULT_OCF_ROOT = Path("/usr/lib/ocf")
DEFAULT_TIMEOUT = 20.0  # seconds, for an action the meta-data gives no timeout for
METADATA_TIMEOUT = 10.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCF_RC = {
    0: "OCF_SUCCESS",
    1: "OCF_ERR_GENERIC",
    2: "OCF_ERR_ARGS",
    3: "OCF_ERR_UNIMPLEMENTED",
    4: "OCF_ERR_PERM",
    5: "OCF_ERR_INSTALLED",
    6: "OCF_ERR_CONFIGURED",
    7: "OCF_NOT_RUNNING",
    8: "OCF_RUNNING_PROMOTED",
    9: "OCF_FAILED_PROMOTED",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NO_CLEANUP_RCS = (2, 3, 4, 5, 6)  # the agent refused before doing anything: nothing to stop


class AgentNotInstalled(DriverError):
    """The agent's executable is missing (OCF_ERR_INSTALLED, found before running it)."""


def describe_rc(rc: int) -> str:
    """``rc 7 (OCF_NOT_RUNNING)``; a negative rc is the signal that killed the agent."""
    if rc < 0:
        return f"killed by signal {-rc}"
    return f"rc {rc} ({OCF_RC.get(rc, 'not an OCF code')})"


def monitor_status(rc: int, output: str = "") -> DriverStatus:
    """The DriverStatus for a ``monitor`` exit code (see the module contract)."""
    said = f": {output}" if output else ""
    if rc == 0:
        return DriverStatus("running")
    if rc == 7:
        return DriverStatus("stopped")
    if rc == 8:
        return DriverStatus("running", "promoted", promoted=True)
    if rc == 9:
        return DriverStatus("failed", f"monitor: {describe_rc(rc)}{said}", promoted=True)
    return DriverStatus("failed", f"monitor: {describe_rc(rc)}{said}")


def _param_value(value: str | int | float | bool, node: NodeContext) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return node.render(value)
    return str(value)


@dataclass(frozen=True)
class ActionResult:
    action: str
    rc: int
    output: str  # the last lines of the agent's stderr, else stdout

    @property
    def described(self) -> str:
        return describe_rc(self.rc) + (f": {self.output}" if self.output else "")


class OcfAgent:
    """Driver for one OCF resource-agent instance (see the module docstring)."""

    def __init__(
        self,
        name: str,
        spec: OcfSpec,
        node: NodeContext,
        *,
        ocf_root: Path = DEFAULT_OCF_ROOT,
        timeouts: Mapping[str, float] | None = None,
        default_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        provider, _, kind = spec.agent.partition(":")
        if {provider, kind} & {"", ".", ".."}:
            raise DriverError(f"{name}: {spec.agent!r} is not an OCF agent name")
        bad = sorted(key for key in spec.params if not _ENV_NAME.match(key))
        if bad:
            raise DriverError(f"{name}: OCF parameter names must be identifiers: {bad}")
        self.name = name
        self.agent = f"ocf:{spec.agent}"
        self.path = ocf_root / "resource.d" / provider / kind
        self.params = {
            key: _param_value(value, node)
            for key, value in spec.params.items()
            if not isinstance(value, SecretRef)
        }
        self._secrets = {k: v for k, v in spec.params.items() if isinstance(v, SecretRef)}
        self._render = node.render
        self.monitor_interval = spec.monitor_interval
        self.log_path = _files.log_path(node, name)
        self._ocf_root = ocf_root
        self._provider, self._kind = provider, kind
        self._overrides = dict(timeouts or {})
        self._default_timeout = default_timeout
        self._meta: OcfMetadata | None = None

    # --- meta-data --------------------------------------------------------------------------

    async def metadata(self) -> OcfMetadata:
        """The agent's parsed meta-data (read once); AgentNotInstalled, DriverError."""
        if self._meta is not None:
            return self._meta
        if not (self.path.is_file() and os.access(self.path, os.X_OK)):
            raise AgentNotInstalled(
                f"{self.name}: OCF agent {self.agent} is not installed (no executable {self.path})"
            )
        timeout = self._overrides.get("meta-data", METADATA_TIMEOUT)
        res = await self._exec("meta-data", timeout=timeout, interval=0.0)
        if res.returncode != 0:
            raise DriverError(
                f"{self.name}: {self.agent} meta-data failed: "
                f"{describe_rc(res.returncode)} {res.summary()}".rstrip()
            )
        try:
            self._meta = parse_metadata(res.stdout)
        except ValueError as exc:
            raise DriverError(f"{self.name}: {self.agent} meta-data unreadable: {exc}") from exc
        return self._meta

    async def validate(self) -> OcfMetadata:
        """Meta-data, after checking the spec's parameters against it (DriverError if not)."""
        meta = await self.metadata()
        problems = check_params(meta, {**self.params, **dict.fromkeys(self._secrets, "secret")})
        if problems:
            raise DriverError(f"{self.name}: {self.agent}: " + "; ".join(problems))
        return meta

    def timeout(self, action: str) -> float:
        """Seconds ``action`` may take: override, else meta-data, else the default."""
        if action in self._overrides:
            return self._overrides[action]
        if self._meta is not None and action in self._meta.timeouts:
            return self._meta.timeouts[action]
        return self._default_timeout

    # --- running actions --------------------------------------------------------------------

    def _environment(self, timeout: float, interval: float) -> dict[str, str]:
        env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL") if key in os.environ}
        env.setdefault("PATH", DEFAULT_PATH)
        env.update(
            OCF_ROOT=str(self._ocf_root),
            OCF_RA_VERSION_MAJOR="1",
            OCF_RA_VERSION_MINOR="1",
            OCF_RESOURCE_INSTANCE=self.name,
            OCF_RESOURCE_TYPE=self._kind,
            OCF_RESOURCE_PROVIDER=self._provider,
            OCF_RESKEY_CRM_meta_timeout=str(int(timeout * 1000)),
            OCF_RESKEY_CRM_meta_interval=str(int(interval * 1000)),
        )
        env.update({f"OCF_RESKEY_{key}": value for key, value in self.params.items()})
        return env

    async def _exec(self, action: str, *, timeout: float, interval: float) -> Completed:
        """Run ``action``. Secret parameters are resolved now, at every action (a rotated
        password is used at the next monitor), and masked in the output that is kept."""
        env = self._environment(timeout, interval)
        secrets = {} if action == "meta-data" else await self._resolve_secrets()
        env.update({f"OCF_RESKEY_{key}": value for key, value in secrets.items()})
        done = await run_command([str(self.path), action], timeout=timeout, env=env, cwd="/")
        if not secrets:
            return done
        said = secrets.values()
        return replace(done, stdout=redact(done.stdout, said), stderr=redact(done.stderr, said))

    async def _resolve_secrets(self) -> dict[str, str]:
        return {
            key: await resolve(ref, f"{self.name}: OCF parameter {key}", self._render)
            for key, ref in self._secrets.items()
        }

    async def run_action(self, action: str, *, interval: float = 0.0) -> ActionResult:
        """Run one action after validation; CommandTimeout (a DriverError) when it overruns.

        ``interval`` is passed as ``OCF_RESKEY_CRM_meta_interval``: 0 for a one-off (probe),
        the monitor interval for a recurring monitor.
        """
        await self.validate()
        timeout = self.timeout(action)
        try:
            res = await self._exec(action, timeout=timeout, interval=interval)
        except CommandTimeout:
            self._log(f"{action}: timed out after {timeout:g}s, killed", "")
            raise CommandTimeout(
                f"{self.name}: {self.agent} {action} timed out after {timeout:g}s"
            ) from None
        result = ActionResult(action, res.returncode, res.summary())
        if action != "monitor" or result.rc not in (0, 7, 8):
            self._log(f"{action}: {describe_rc(result.rc)}", res.stdout + res.stderr)
        return result

    def _log(self, headline: str, output: str) -> None:
        text = f"--- corral {_files.stamp()} {self.name} ({self.agent}) {headline}\n{output}"
        _files.append_log(self.log_path, text)

    # --- the Driver protocol ----------------------------------------------------------------

    async def start(self) -> None:
        try:
            res = await self.run_action("start")
        except CommandTimeout as exc:
            raise DriverError(f"{exc}{await self._cleanup()}") from None
        if res.rc != 0:
            cleanup = "" if res.rc in _NO_CLEANUP_RCS else await self._cleanup()
            raise DriverError(f"{self.name}: {self.agent} start failed: {res.described}{cleanup}")
        probe = await self._monitor(interval=0.0)
        if probe.state != "running":
            raise DriverError(
                f"{self.name}: {self.agent} start returned 0 but monitor says {probe.state}"
                + (f" ({probe.detail})" if probe.detail else "")
                + await self._cleanup()
            )

    async def stop(self) -> None:
        try:
            meta = await self.validate()
        except AgentNotInstalled:
            return  # nothing can be running through an agent that is not there
        if meta.promotable and (await self._monitor(interval=0.0)).promoted:
            await self.demote()
        res = await self.run_action("stop")
        if res.rc not in (0, 7):
            raise DriverError(f"{self.name}: {self.agent} stop failed: {res.described}")

    async def status(self) -> DriverStatus:
        return await self._monitor(interval=self.monitor_interval)

    async def adopt(self) -> bool:
        return (await self._monitor(interval=0.0)).state == "running"

    async def promote(self) -> None:
        await self._role_action("promote")

    async def demote(self) -> None:
        await self._role_action("demote")

    # --- helpers ----------------------------------------------------------------------------

    async def _monitor(self, *, interval: float) -> DriverStatus:
        """Monitor as a status: never raises (see the contract for the mapping)."""
        try:
            res = await self.run_action("monitor", interval=interval)
        except AgentNotInstalled as exc:
            return DriverStatus("stopped", str(exc))
        except DriverError as exc:  # bad parameters, unreadable meta-data, a timeout
            return DriverStatus("failed", str(exc))
        return monitor_status(res.rc, res.output)

    async def _role_action(self, action: str) -> None:
        meta = await self.validate()
        if action not in meta.actions:
            raise DriverError(f"{self.name}: {self.agent} has no {action} action (not promotable)")
        res = await self.run_action(action)
        if res.rc != 0:
            raise DriverError(f"{self.name}: {self.agent} {action} failed: {res.described}")

    async def _cleanup(self) -> str:
        """Stop after a failed start; returns what to add to the error message."""
        try:
            await self.stop()
        except DriverError as exc:
            return f"; the stop that followed failed too: {exc}"
        return "; stopped it again"
