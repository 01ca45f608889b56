"""The my.cnf a Galera node gets, and the settings it is rendered from (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.drivers.galera_conf import PROVIDER, GaleraSettings, render_config


def settings(**changes: object) -> GaleraSettings:
    values: dict[str, object] = {
        "node": "db1",
        "address": "198.18.72.1",
        "peers": ("198.18.72.1", "198.18.72.2", "198.18.72.3"),
        "cluster": "cloud1",
        "base_dir": Path("/var/lib/corral/galera"),
    }
    values.update(changes)
    return GaleraSettings(**values)  # type: ignore[arg-type]


def options(text: str) -> dict[str, str]:
    section, found = "", {}
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "mysqld":
            key, _, value = line.partition("=")
            found[key] = value
    return found


def test_the_node_listens_on_its_address_and_joins_every_peer() -> None:
    mine = options(render_config(settings(provider_options="evs.suspect_timeout=PT2S"), None))
    assert mine["bind-address"] == mine["wsrep_node_address"] == "198.18.72.1"
    assert mine["wsrep_cluster_address"] == "gcomm://198.18.72.1,198.18.72.2,198.18.72.3"
    assert mine["wsrep_provider"] == PROVIDER and mine["wsrep_on"] == "ON"
    assert mine["datadir"] == "/var/lib/corral/galera/data"
    assert mine["socket"] == "/var/lib/corral/galera/run/mysqld.sock"
    assert mine["wsrep_sst_method"] == "mariabackup" and mine["wsrep_node_name"] == "db1"
    assert mine["wsrep_provider_options"] == '"evs.suspect_timeout=PT2S"'
    assert "wsrep_sst_auth" not in mine  # no password given: the SST helper uses the socket


def test_the_sst_password_is_written_quoted_so_any_character_survives() -> None:
    mine = options(render_config(settings(), 'sst:pa"ss\\word #1'))
    assert mine["wsrep_sst_auth"] == '"sst:pa\\"ss\\\\word #1"'


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"node": "db 1"}, "node name"),
        ({"node": "db1\n"}, "node name"),
        ({"peers": ("198.18.72.1\n",)}, "address"),
        ({"cluster": ""}, "cluster name"),
        ({"peers": ()}, "no peers"),
        ({"sst_method": "xtrabackup"}, "sst_method"),
        ({"sst_user": "sst'; DROP"}, "sst_user"),
        ({"check_user": ""}, "check_user"),
        ({"port": 0}, "port 0"),
        ({"peers": ("198.18.72.1,evil",)}, "address"),
        ({"address": ""}, "address"),
        ({"provider_options": "a=1\nwsrep_on=OFF"}, "provider_options"),
        ({"options": (("innodb_buffer_pool_size", "1G\nwsrep_on=OFF"),)}, "option"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        settings(**change)
