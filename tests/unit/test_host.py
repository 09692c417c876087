"""The host layer: nodes sized for the machine, boot files in order, the Mac's settings, the post-boot report.

launchd's keys and types are launchd.plist(5)'s
(https://keith.github.io/xcode-man-pages/launchd.plist.5.html): ``Label`` (string, required),
``ProgramArguments`` (array of strings), ``UserName``/``GroupName`` (string; only for jobs run
as root, i.e. LaunchDaemons), ``WorkingDirectory``, ``StandardOutPath``, ``StandardErrorPath``
(string), ``EnvironmentVariables`` (dictionary of strings), ``RunAtLoad`` (boolean) and
``KeepAlive`` (boolean or dictionary). systemd's are systemd.unit(5)/systemd.service(5).
"""

from __future__ import annotations

import copy
import os
import plistlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REFERENCE_CONFIG, REPO, run_cli
from homelab.config import loader
from homelab.config.kinds import size_mib
from homelab.config.schema import HomelabConfig
from homelab.core.errors import ConfigError
from homelab.core.plan import Note, Run, WriteFile
from homelab.host import after_boot, boot, settings, sizing

MAC_24 = sizing.HostFacts(24 * 1024, 10, "a 24 GB Mac")
MAC_16 = sizing.HostFacts(16 * 1024, 10, "a 16 GB Mac")
PLIST_TYPES: dict[str, type | tuple[type, ...]] = {
    "Label": str,
    "ProgramArguments": list,
    "UserName": str,
    "GroupName": str,
    "WorkingDirectory": str,
    "EnvironmentVariables": dict,
    "StandardOutPath": str,
    "StandardErrorPath": str,
    "RunAtLoad": bool,
    "KeepAlive": (bool, dict),
}


def reference() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(REFERENCE_CONFIG.read_text())
    return data


def with_example(name: str) -> dict[str, Any]:
    overlay = yaml.safe_load((REPO / "config" / "examples" / name).read_text())
    merged, _ = loader.merge_layers([loader.Layer("reference", reference()), loader.Layer(name, overlay)])
    data: dict[str, Any] = merged
    return data


def cfg_of(data: dict[str, Any]) -> HomelabConfig:
    return loader.validate(data)


# --- sizing ----------------------------------------------------------------------------------------


def test_the_reference_nodes_fit_a_24gb_mac() -> None:
    assert sizing.problems(cfg_of(reference()), MAC_24) == []


def oversized() -> dict[str, Any]:
    """The reference with the node sizes it had before it was fitted to a 24 GB Mac (6 + 8 + 8 GiB)."""
    data = reference()
    for node, memory in zip(data["nodes"], ("6GiB", "8GiB", "8GiB"), strict=True):
        node["memory"] = memory
    return data


def test_nodes_that_overcommit_a_24gb_mac_get_each_memory_key_a_size_that_fits() -> None:
    cfg = cfg_of(oversized())
    found = sizing.problems(cfg, MAC_24)
    assert [p.path for p in found] == ["nodes[0].memory", "nodes[1].memory", "nodes[2].memory"]
    assert "22GiB for the nodes" in found[0].message and "leaves 18GiB" in found[0].message
    assert "host.reserved_memory 6GiB" in found[0].message
    suggested = [size_mib(p.message.rsplit("set it to ", 1)[1].split()[0]) for p in found]
    assert suggested == [4608, 6656, 6656]
    assert sum(suggested) <= 18 * 1024
    data = oversized()
    for node, mib in zip(data["nodes"], suggested, strict=True):
        node["memory"] = sizing.shown(mib)
    assert sizing.problems(cfg_of(data), MAC_24) == []  # the suggestion is itself accepted


def test_the_16gb_example_fits_a_16gb_mac_and_the_reference_does_not() -> None:
    assert sizing.problems(cfg_of(with_example("mac-16gb.local.yaml")), MAC_16) == []
    assert len(sizing.problems(cfg_of(reference()), MAC_16)) == 3


def test_a_larger_headroom_is_what_refuses() -> None:
    data = with_example("mac-16gb.local.yaml")
    data["host"]["reserved_memory"] = "7GiB"
    found = sizing.problems(cfg_of(data), MAC_16)
    assert found and "leaves 9GiB" in found[0].message


def test_a_headroom_that_leaves_less_than_a_gib_per_node_names_the_headroom_key() -> None:
    data = reference()
    data["host"]["reserved_memory"] = "14GiB"
    found = sizing.problems(cfg_of(data), MAC_16)
    assert [p.path for p in found] == ["host.reserved_memory"]


def test_a_node_with_more_cpus_than_the_host_is_refused_and_many_vcpus_together_are_only_said() -> None:
    data = with_example("mac-16gb.local.yaml")
    data["nodes"][0]["cpus"] = 12
    found = sizing.problems(cfg_of(data), MAC_16)
    assert [p.path for p in found] == ["nodes[0].cpus"] and "set it to 10 or fewer" in found[0].message
    data["nodes"][0]["cpus"] = 8
    cfg = cfg_of(data)
    assert sizing.problems(cfg, MAC_16) == []
    assert "14 vCPUs together on 10 host CPUs" in (sizing.cpu_note(cfg, MAC_16) or "")
    data["host"]["reserved_cpus"] = 4
    assert [p.path for p in sizing.problems(cfg_of(data), MAC_16)] == ["nodes[0].cpus"]


def test_host_facts_come_from_the_stand_in_variables_and_both_are_needed() -> None:
    facts = sizing.probe("macos", {"HOMELAB_HOST_MEMORY": "24GiB", "HOMELAB_HOST_CPUS": "10"})
    assert facts is not None and (facts.memory_mib, facts.cpus) == (24576, 10)
    with pytest.raises(ConfigError, match="HOMELAB_HOST_CPUS"):
        sizing.probe("macos", {"HOMELAB_HOST_MEMORY": "24GiB"})


def test_meminfo_is_read_in_kib() -> None:
    assert sizing.meminfo_mib("MemFree: 1 kB\nMemTotal:       16384000 kB\n") == 16000


def test_a_mac_config_is_not_sized_against_a_linux_runner() -> None:
    line = sizing.check(cfg_of(reference()), env={})
    assert os.uname().sysname != "Linux" or "not checked" in line


# --- systemd ---------------------------------------------------------------------------------------


def spec(vms: tuple[tuple[str, str], ...] = (("srv", "server"), ("a1", "agent"), ("a2", "agent"))) -> boot.Boot:
    return boot.Boot(
        owner="owner",
        home=Path("/home/owner"),
        program=Path("/opt/homelab/.venv/bin/homelab"),
        workdir=Path("/opt/homelab"),
        config=Path("/opt/homelab/config/homelab.yaml"),
        limactl=Path("/usr/local/bin/limactl"),
        lima_home=Path("/home/owner/.lima"),
        vms=vms,
        log=Path("/opt/homelab/.homelab/boot.log"),
        socket_vmnet=("/opt/socket_vmnet/bin/socket_vmnet", "--vmnet-gateway=192.168.105.1", "/var/run/socket_vmnet"),
    )


def unit_field(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_the_server_starts_first_and_each_agent_after_the_one_before_then_the_post_boot_check() -> None:
    cfg = cfg_of(reference())
    cfg = cfg.model_copy(update={"nodes": list(reversed(cfg.nodes))})  # the server listed last still starts first
    assert [name for name, _ in boot.start_order(cfg)] == ["k3s-server", "k3s-worker-2", "k3s-worker-1"]
    units = boot.systemd_units(spec())
    assert list(units) == [
        "homelab-vm-srv.service",
        "homelab-vm-a1.service",
        "homelab-vm-a2.service",
        "homelab-after-boot.service",
    ]
    assert unit_field(units["homelab-vm-srv.service"], "After") == ["network-online.target"]
    assert unit_field(units["homelab-vm-a1.service"], "After") == ["network-online.target homelab-vm-srv.service"]
    assert unit_field(units["homelab-vm-a2.service"], "After") == ["network-online.target homelab-vm-a1.service"]
    after = unit_field(units["homelab-after-boot.service"], "After")[0].split()
    assert after == ["homelab-vm-srv.service", "homelab-vm-a1.service", "homelab-vm-a2.service"]
    starts = [boot.exec_starts(text)[0] for text in units.values()]
    assert starts == [
        "/usr/local/bin/limactl start --tty=false srv",
        "/usr/local/bin/limactl start --tty=false a1",
        "/usr/local/bin/limactl start --tty=false a2",
        "/opt/homelab/.venv/bin/homelab host.after-boot",
    ]


def test_each_vm_unit_runs_as_the_owner_stays_active_and_stops_its_vm() -> None:
    text = boot.systemd_units(spec())["homelab-vm-a1.service"]
    for line in ("Type=oneshot", "RemainAfterExit=yes", "User=owner", "WantedBy=multi-user.target"):
        assert line in text.splitlines()
    assert unit_field(text, "ExecStop") == ["/usr/local/bin/limactl stop a1"]
    assert "Environment=LIMA_HOME=/home/owner/.lima" in text.splitlines()
    post = boot.systemd_units(spec())["homelab-after-boot.service"]
    assert "Type=simple" in post.splitlines()  # its wait never holds back multi-user.target


def test_exec_words_escape_specifiers_variables_and_spaces() -> None:
    assert boot.exec_arg("/a b/limactl") == '"/a b/limactl"'
    assert boot.exec_arg("50%$HOME") == "50%%$$HOME"
    assert boot.exec_arg('say "hi"') == '"say \\"hi\\""'


# --- launchd ---------------------------------------------------------------------------------------


def test_the_plists_round_trip_with_documented_keys_of_their_documented_types() -> None:
    files = boot.launchd_files(spec())
    assert list(files) == ["io.github.lima-vm.socket_vmnet.plist", "org.homelab.boot.plist"]
    for name, data in files.items():
        value = plistlib.loads(data)
        assert set(value) <= boot.DOCUMENTED_KEYS, set(value) - boot.DOCUMENTED_KEYS
        assert value["Label"] == name.removesuffix(".plist")
        for key, item in value.items():
            assert isinstance(item, PLIST_TYPES[key]), key
        assert all(isinstance(a, str) for a in value["ProgramArguments"])
    daemon = plistlib.loads(files["org.homelab.boot.plist"])
    assert daemon["UserName"] == "owner" and daemon["RunAtLoad"] is True  # at boot, as the owner, no login
    assert daemon["ProgramArguments"] == ["/opt/homelab/.venv/bin/homelab", "host.boot"]
    vmnet = plistlib.loads(files["io.github.lima-vm.socket_vmnet.plist"])
    assert vmnet["UserName"] == "root" and vmnet["KeepAlive"] is True


def test_socket_vmnet_is_managed_only_in_shared_mode_on_the_mac() -> None:
    cfg = cfg_of(reference())
    assert boot.socket_vmnet_argv(cfg) == (
        "/opt/socket_vmnet/bin/socket_vmnet",
        "--vmnet-gateway=192.168.105.1",
        "--vmnet-dhcp-end=192.168.105.9",
        "/var/run/socket_vmnet",
    )
    bridged = cfg.model_copy(update={"lima": cfg.lima.model_copy(update={"mode": "bridged"})})
    assert boot.socket_vmnet_argv(bridged) == ()  # the bridged socket_vmnet is the owner's (docs/guide/home-network.md)


# --- the plan, into a fake root --------------------------------------------------------------------


def write(planned: Any) -> None:
    for action in planned.actions:
        if isinstance(action, WriteFile):
            Path(action.path).parent.mkdir(parents=True, exist_ok=True)
            Path(action.path).write_bytes(action.data())
        elif isinstance(action, Run) and action.argv[0] == "rm":
            Path(action.argv[-1]).unlink()


def test_install_into_a_fake_root_writes_only_and_is_idempotent_then_removal_empties_it(tmp_path: Path) -> None:
    first = boot.plan("linux", spec(), tmp_path, remove=False, system=False)
    assert [Path(a.path).name for a in first.actions if isinstance(a, WriteFile)] == list(boot.systemd_units(spec()))
    assert not [a for a in first.actions if isinstance(a, Run)]  # no systemctl outside the system's directory
    assert not any(a.sudo for a in first.actions if isinstance(a, WriteFile))
    write(first)
    again = boot.plan("linux", spec(), tmp_path, remove=False, system=False)
    assert again.empty
    gone = boot.plan("linux", spec(), tmp_path, remove=True, system=False)
    write(gone)
    assert list(tmp_path.iterdir()) == []
    assert isinstance(boot.plan("linux", spec(), tmp_path, remove=True, system=False).actions[0], Note)


def test_the_system_directory_is_enabled_with_systemctl_and_launchd_is_left_for_the_next_boot(tmp_path: Path) -> None:
    linux = boot.plan("linux", spec(), tmp_path, remove=False, system=True)
    runs = [a.argv for a in linux.actions if isinstance(a, Run)]
    assert runs == [("systemctl", "daemon-reload"), ("systemctl", "enable", *boot.systemd_units(spec()))]
    mac = boot.plan("macos", spec(), tmp_path, remove=False, system=True)
    assert [a.argv for a in mac.actions if isinstance(a, Run)] == [
        ("launchctl", "enable", "system/io.github.lima-vm.socket_vmnet"),
        ("launchctl", "enable", "system/org.homelab.boot"),
    ]


# --- the Mac's settings ----------------------------------------------------------------------------

PMSET_OFF = (
    "System-wide power settings:\nCurrently in use:\n sleep                1 (sleep prevented by x)\n"
    " autorestart          0\n"
)
PMSET_ON = "Currently in use:\n sleep                0\n autorestart          1\n"


def facts(pmset: str = PMSET_ON, filevault: str = "FileVault is Off.", **kw: Any) -> settings.MacFacts:
    base: dict[str, Any] = {"auto_update": None, "cloudflared": True, "lm_studio_answers": True}
    base.update(kw)
    return settings.MacFacts(pmset=pmset, fdesetup=filevault, **base)


def by_name(rows: list[Any]) -> dict[str, Any]:
    return {row.name: row for row in rows}


def test_a_mac_set_up_as_a_server_passes_every_host_row(tmp_path: Path) -> None:
    rows = by_name(settings.checks(cfg_of(reference()), facts(), home=tmp_path))
    assert {name: row.status for name, row in rows.items()} == {
        "host sleep": "ok",
        "host autorestart": "ok",
        "host filevault": "ok",
        "host updates": "ok",
        "host full disk access": "ok",
        "host lm studio": "ok",
        "host cloudflared": "ok",
    }


def test_sleep_autorestart_filevault_lm_studio_and_cloudflared_are_each_named(tmp_path: Path) -> None:
    mac = facts(PMSET_OFF, "FileVault is On.", cloudflared=False, lm_studio_answers=False, auto_update="1")
    rows = by_name(settings.checks(cfg_of(reference()), mac, home=tmp_path))
    assert rows["host sleep"].status == "fail" and "1 min" in rows["host sleep"].detail
    assert rows["host autorestart"].status == "fail"
    assert rows["host filevault"].status == "warn" and "unlock screen" in rows["host filevault"].detail
    assert "fdesetup authrestart" in rows["host filevault"].fix
    assert rows["host lm studio"].status == "fail" and "192.168.105.1:1234" in rows["host lm studio"].detail
    assert rows["host cloudflared"].status == "fail" and "brew install cloudflared" in rows["host cloudflared"].fix
    assert "restarts by itself" in rows["host updates"].detail


def test_a_backup_under_documents_needs_full_disk_access(tmp_path: Path) -> None:
    data = reference()
    data["backup"]["repository"] = str(tmp_path / "Documents" / "restic")
    rows = by_name(settings.checks(cfg_of(data), facts(), home=tmp_path))
    assert rows["host full disk access"].status == "warn"
    assert "backup.repository in ~/Documents" in rows["host full disk access"].detail


def test_not_macos_is_one_row_and_prepare_has_nothing_to_do() -> None:
    rows = settings.checks(cfg_of(reference()), None)
    assert len(rows) == 1 and rows[0].status == "ok" and "not macOS" in rows[0].detail
    assert settings.prepare_plan(None).empty


def test_prepare_changes_only_pmset_with_sudo_and_says_the_rest_as_steps() -> None:
    planned = settings.prepare_plan(facts(PMSET_OFF, "FileVault is On.", cloudflared=False, lm_studio_answers=False))
    runs = [a for a in planned.actions if isinstance(a, Run)]
    assert [a.argv for a in runs] == [("pmset", "-a", "sleep", "0"), ("pmset", "-a", "autorestart", "1")]
    assert all(a.sudo for a in runs)
    notes = " ".join(a.text for a in planned.actions if isinstance(a, Note))
    assert "fdesetup authrestart" in notes and "cloudflared" in notes and "LM Studio" in notes
    assert not [a for a in settings.prepare_plan(facts()).actions if isinstance(a, Run)]


def test_lm_studio_answers_is_a_real_connection_on_loopback() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert settings.answers("127.0.0.1", port)
    assert not settings.answers("127.0.0.1", port, timeout=0.5)


# --- the post-boot report --------------------------------------------------------------------------


class FakeKube:
    def __init__(self, rounds: list[tuple[dict[str, bool], list[dict[str, Any]]]]) -> None:
        self.rounds = rounds

    def ready_nodes(self) -> dict[str, bool]:
        return self.rounds[0][0]

    def list_objects(self, *_: Any) -> list[dict[str, Any]]:
        nodes_apps = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
        return nodes_apps[1]


def application(name: str, sync: str, health: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"sync": {"status": sync}, "health": {"status": health}}}


class FakeSession:
    def __init__(self) -> None:
        self.cfg = cfg_of(reference())


def test_the_wait_ends_when_every_node_and_application_is_back_and_says_how_long() -> None:
    everyone = {n.name: True for n in FakeSession().cfg.nodes}
    kube = FakeKube(
        [
            ({**everyone, "k3s-worker-2": False}, [application("plex", "Synced", "Progressing")]),
            (everyone, [application("plex", "Synced", "Healthy")]),
        ]
    )
    now = [0.0]
    missing, seconds = after_boot.wait(
        FakeSession(),
        lambda: kube,
        600,
        interval=30,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert missing == [] and seconds == 30
    assert after_boot.message(missing, 360, "homelab") == (
        "homelab: back after boot in 6.0 min; every node Ready, every Application Synced and Healthy"
    )


def test_the_wait_is_bounded_and_the_message_names_what_is_still_down() -> None:
    kube = FakeKube([({"k3s-server": True}, [application("plex", "OutOfSync", "Degraded")])])
    now = [0.0]
    missing, seconds = after_boot.wait(
        FakeSession(),
        lambda: kube,
        100,
        interval=30,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert seconds == 100
    assert missing == ["node k3s-worker-1 not Ready", "node k3s-worker-2 not Ready", "plex OutOfSync/Degraded"]
    assert "still down 1.7 min after boot: node k3s-worker-1 not Ready" in after_boot.message(missing, 100, "homelab")


# --- through the CLI -------------------------------------------------------------------------------


def mac(memory: str) -> dict[str, str]:
    return {"HOMELAB_HOST_MEMORY": memory, "HOMELAB_HOST_CPUS": "10"}


def test_cli_host_check_refuses_the_reference_on_a_16gb_mac_and_passes_the_16gb_example_on_16gb(
    tmp_path: Path,
) -> None:
    refused = run_cli(["host.check"], env=mac("16GiB"), isolated_network=True)
    assert refused.code == 2, refused.output
    assert "nodes[1].memory" in refused.stderr and "set it to " in refused.stderr
    assert run_cli(["host.check"], env=mac("24GiB"), isolated_network=True).code == 0, "the reference fits 24 GB"
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml.safe_dump(with_example("mac-16gb.local.yaml")))
    fits = run_cli(["host.check"], env={**mac("16GiB"), "HOMELAB_CONFIG": str(config)}, isolated_network=True)
    assert fits.code == 0, fits.output
    assert "the nodes' 10GiB fit 16GiB less 6GiB reserved" in fits.stdout


def test_cli_vm_apply_refuses_an_overcommit_before_terraform(tmp_path: Path) -> None:
    done = run_cli(["vm.apply", "--dry-run"], env=mac("16GiB"), isolated_network=True)
    assert done.code == 2, done.output
    assert "nodes[0].memory" in done.stderr
    assert "terraform" not in done.stdout.lower()


def test_cli_autostart_dry_run_prints_the_files_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "LaunchDaemons"
    done = run_cli(["host.autostart", "--dry-run", f"--root={root}"], isolated_network=True)
    assert done.code == 0, done.output
    assert f"write {root}/org.homelab.boot.plist" in done.stdout
    assert f"write {root}/io.github.lima-vm.socket_vmnet.plist" in done.stdout
    assert not root.exists()


def test_cli_autostart_refuses_a_relative_root() -> None:
    done = run_cli(["host.autostart", "--dry-run", "--root=relative/dir"], isolated_network=True)
    assert done.code == 2 and "must be an absolute directory" in done.stderr, done.output


def test_cli_prepare_dry_run_on_linux_says_not_macos() -> None:
    done = run_cli(["host.prepare", "--dry-run"], isolated_network=True)
    assert done.code == 0, done.output
    assert os.uname().sysname != "Linux" or "not macOS" in done.stdout


def test_copy_of_reference_is_untouched() -> None:
    before = copy.deepcopy(reference())
    cfg_of(reference())
    assert reference() == before


def test_the_doctor_gets_the_host_rows_on_a_lima_target_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from homelab.host import tasks as host_tasks

    monkeypatch.setenv("HOMELAB_HOST_MEMORY", "16GiB")
    monkeypatch.setenv("HOMELAB_HOST_CPUS", "10")
    monkeypatch.setattr(settings, "facts_here", lambda cfg: facts())
    rows = by_name(host_tasks.doctor_checks(FakeSession()))
    assert rows["host sleep"].status == "ok"
    assert rows["host sizing"].status == "fail" and "nodes[0].memory" in rows["host sizing"].detail
    sandbox = FakeSession()
    sandbox.cfg = sandbox.cfg.model_copy(update={"target": "sandbox"})
    assert host_tasks.doctor_checks(sandbox) == []


def test_up_says_whether_the_vms_come_back_by_themselves(tmp_path: Path) -> None:
    from homelab.host import tasks as host_tasks

    cfg = cfg_of(reference())
    assert "inv host.autostart installs that" in host_tasks.autostart_said(cfg, tmp_path)
    (tmp_path / "org.homelab.boot.plist").write_bytes(b"")
    assert host_tasks.autostart_said(cfg, tmp_path).startswith("boot: the VMs start at boot in order")
    linux = cfg.model_copy(update={"host": cfg.host.model_copy(update={"kind": "linux"})})
    assert "installs that" in host_tasks.autostart_said(linux, tmp_path)  # the units are not there
    for name in boot.systemd_units_names(linux):
        (tmp_path / name).write_text("")
    assert "start at boot" in host_tasks.autostart_said(linux, tmp_path)


def test_the_report_reaches_a_telegram_stand_in_on_loopback_through_backups_notify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import threading
    import urllib.parse

    from homelab.core import cluster

    got: list[tuple[str, dict[str, list[str]]]] = []

    class Bot(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            got.append((self.path, urllib.parse.parse_qs(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Bot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "bot-token"
    token.write_text("123456:stand-in-token\n")
    token.chmod(0o600)
    data = reference()
    data["backup"]["notify_api"] = f"http://127.0.0.1:{server.server_port}"
    data["monitoring"]["telegram"]["bot_token"] = {"file": str(token)}
    session = FakeSession()
    session.cfg = cfg_of(data)
    everyone = {n.name: True for n in session.cfg.nodes}
    kube = FakeKube([(everyone, [application("vaultwarden", "Synced", "Healthy")])])
    monkeypatch.setattr(cluster, "connect", lambda s: kube)
    try:
        back, text = after_boot.report(session, timeout=5, interval=1)
    finally:
        server.shutdown()
    assert back and "back after boot" in text
    assert len(got) == 1
    path, form = got[0]
    assert path == "/bot123456:stand-in-token/sendMessage"
    assert form["chat_id"] == ["-1001234567890"] and form["text"] == [text]


def test_cli_boot_dry_run_waits_for_socket_vmnet_then_starts_the_server_then_each_agent() -> None:
    done = run_cli(["host.boot", "--dry-run"], isolated_network=True)
    assert done.code == 0, done.output
    lines = [line for line in done.stdout.splitlines() if "wait for" in line or "start --tty=false" in line]
    assert "socket_vmnet's socket /var/run/socket_vmnet" in lines[0]
    assert [line.rsplit(" ", 1)[1] for line in lines[1:]] == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]


def test_the_accelerator_environment_reaches_each_vm_unit_quoted_and_reads_back() -> None:
    import dataclasses

    tcg = (("QEMU_SYSTEM_X86_64", "/usr/bin/qemu-system-x86_64 -machine q35,accel=tcg -cpu max"),)
    text = boot.systemd_units(dataclasses.replace(spec(), env=tcg))["homelab-vm-srv.service"]
    assert 'Environment="QEMU_SYSTEM_X86_64=/usr/bin/qemu-system-x86_64 -machine q35,accel=tcg -cpu max"' in text
    assert boot.unit_environment(text)["QEMU_SYSTEM_X86_64"] == tcg[0][1]
    assert boot.unit_environment(text)["LIMA_HOME"] == "/home/owner/.lima"
