"""corral's scheduling weights on real processes (root: this test machine's CI runs as root)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raising priority needs root")


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_guard_past_its_real_time_budget_is_demoted_not_killed() -> None:
    done = run(
        """
        import os, time
        from corral.priority import raise_guard
        told = []
        assert raise_guard(told.append) == []
        assert os.sched_getscheduler(0) == os.SCHED_RR
        end = time.process_time() + 0.6  # a runaway loop: 600 ms of CPU, never sleeping
        while time.process_time() < end:
            pass
        print(os.sched_getscheduler(0) == os.SCHED_OTHER, os.getpriority(os.PRIO_PROCESS, 0))
        print(told)
        """
    )
    assert done.returncode == 0, f"the guard was killed: {done.returncode} {done.stderr}"
    first, second = done.stdout.splitlines()
    assert first == "True -10"
    assert "real-time CPU budget" in second and "nice -10" in second


def test_services_started_by_a_raised_agent_run_at_normal_priority() -> None:
    done = run(
        """
        import os, subprocess
        from corral.priority import raise_process, service_argv
        assert raise_process() == []
        print(os.getpriority(os.PRIO_PROCESS, 0))
        child = ["sh", "-c", "cut -d' ' -f19 /proc/$$/stat; exec sleep 0"]
        print(subprocess.run(service_argv(child), capture_output=True, text=True).stdout.strip())
        print(subprocess.run(child, capture_output=True, text=True).stdout.strip())
        """
    )
    assert done.returncode == 0, done.stderr
    agent, service, plain = done.stdout.split()
    assert agent == "-10"  # the agent is raised
    assert service == "0"  # a managed service is not
    assert plain == "-10"  # (what it would have inherited)


def test_without_the_privilege_the_guard_still_runs_and_says_why() -> None:
    done = run(
        """
        import os
        from corral.priority import raise_guard  # (nobody cannot read this Python's files)
        os.setgid(65534); os.setuid(65534)  # nobody: no CAP_SYS_NICE
        problems = raise_guard(print)
        print(os.sched_getscheduler(0) == os.SCHED_OTHER, problems)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True ['real-time priority:"), done.stdout


def test_a_verbose_agent_does_not_log_every_netlink_message() -> None:
    done = run(
        """
        import logging
        from corral.cli.cluster import _agent_process
        _agent_process(verbose=True)
        from pyroute2 import IPRoute
        with IPRoute() as ip:
            ip.get_addr()
        print(logging.getLogger("corral").getEffectiveLevel(),
              logging.getLogger("pyroute2.netlink.core").getEffectiveLevel())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10", "30"], done.stdout  # ours DEBUG, pyroute2 WARNING
    assert "pyroute2" not in done.stderr, done.stderr[-500:]
