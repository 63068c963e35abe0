"""The other agents: clear messages for absent programs, real behaviour where the program exists (fs on tmpfs
and on a loop-mounted ext4 image, postgres), the nfs argv shapes, and the metadata generated from the schema."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cluster_conf.schema import RESOURCE_TYPES
from rgmanager.agents import OCF, UnknownAgentType, agent_for, known_agents
from rgmanager.agents.base import find_program, pid_alive, pid_is_daemon, read_pid
from rgmanager.agents.fs import mounted_at
from rgmanager.agents.nfs import export_argv, is_exported, normal_target, parse_exports, unexport_argv

# (type, attributes, the programs the message must name; the case runs only when none of them is installed)
ABSENT = [
    ("apache", {"name": "web"}, ("httpd", "apache2")),
    ("mysql", {"name": "db"}, ("mysqld_safe", "mariadbd-safe")),
    ("tomcat-6", {"name": "tc"}, ("catalina.sh",)),
    ("samba", {"name": "smb"}, ("smbd",)),
    ("vm", {"name": "guest1"}, ("virsh",)),
    ("lvm", {"name": "vg", "vg_name": "vg0"}, ("lvm",)),
    ("nfsclient", {"name": "c", "target": "*", "path": "/srv"}, ("exportfs",)),
    ("nfsexport", {"name": "e", "path": "/srv"}, ("exportfs",)),
    ("nfsserver", {"name": "s"}, ("rpc.nfsd",)),
    ("netfs", {"name": "n", "host": "filer", "export": "/e", "mountpoint": "/mnt/rgm-netfs-test"}, ("mount.nfs",)),
]


@pytest.mark.parametrize(("rtype", "attrs", "programs"), ABSENT, ids=[case[0] for case in ABSENT])
def test_absent_program_gives_a_clear_message(tmp_path: Path, rtype: str, attrs: dict, programs: tuple) -> None:
    present = [p for p in programs if find_program(p)]
    if present:
        pytest.skip(f"{present[0]} is installed here, so the absent-program message cannot be shown")
    agent = agent_for(rtype)(attrs, run_dir=str(tmp_path / "run"))
    result = agent.start()
    assert result.rc == OCF.ERR_INSTALLED, result
    listed = " or ".join(repr(p) for p in programs)
    assert result.message == f"program {listed} is not installed (not found on PATH or in sbin)"
    assert not (tmp_path / "run").exists() or rtype not in ("apache", "mysql", "samba", "tomcat-6")


@pytest.mark.parametrize("rtype", ["vm", "lvm"])
def test_status_with_absent_program_is_a_failure_not_a_traceback(rtype: str) -> None:
    attrs = {"name": "x", "vg_name": "vg0"} if rtype == "lvm" else {"name": "x"}
    if find_program(agent_for(rtype).programs[0]):
        pytest.skip(f"{agent_for(rtype).programs[0]} is installed here")
    result = agent_for(rtype)(attrs).status()
    assert result.rc == OCF.ERR_INSTALLED and agent_for(rtype).programs[0] in result.message


def test_every_resource_type_has_an_agent_or_a_clear_refusal() -> None:
    for name in RESOURCE_TYPES:
        try:
            cls = agent_for(name)
        except UnknownAgentType as exc:
            assert "has no built-in agent; use <ocf" in str(exc)
        else:
            assert cls.type_name == name
    assert {"script", "ip", "fs", "netfs", "nfsexport", "nfsclient", "nfsserver", "lvm", "apache", "mysql",
            "postgres-8", "tomcat-6", "samba", "vm", "ocf", "service"} <= set(known_agents())
    with pytest.raises(UnknownAgentType, match="unknown resource type 'bogus'"):
        agent_for("bogus")


# -- nfs argv shapes -----------------------------------------------------------------------------------------
def test_nfs_export_argv_shape() -> None:
    assert export_argv("10.0.0.0/24", "/srv/data dir", "rw,sync", "7") == [
        "exportfs", "-i", "-o", "rw,sync,fsid=7", "10.0.0.0/24:/srv/data dir",
    ]
    assert export_argv("@web", "/srv", None, None) == ["exportfs", "-i", "@web:/srv"]
    assert export_argv("*", "/srv", "ro,fsid=3", "9") == ["exportfs", "-i", "-o", "ro,fsid=3", "*:/srv"]
    assert unexport_argv("host1", "/srv") == ["exportfs", "-u", "host1:/srv"]
    hostile = "h1;rm -rf /"
    assert export_argv("h1;rm", "/srv/$(id)", "rw", None)[-1] == "h1;rm:/srv/$(id)"  # one element, verbatim
    for bad_target in ("-o rw", "a b", "h(rw)", "h,x"):
        result = agent_for("nfsclient")({"name": "c", "target": bad_target, "path": "/srv"}).validate()
        assert result.rc == OCF.ERR_CONFIGURED and "is not a host, network or @netgroup" in result.message
    assert agent_for("nfsclient")({"name": "c", "target": "h", "path": "srv"}).validate().rc == OCF.ERR_CONFIGURED
    assert hostile  # the hostile value above never reaches a shell: there is none


def test_parse_exportfs_verbose_output() -> None:
    text = (
        "/srv/data     \t10.0.0.0/24(rw,wdelay,root_squash,no_subtree_check,fsid=7)\n"
        "/srv/with\\040space\n\t\t@web(ro,sync)\n"
        "/srv/world    <world>(ro)\n"
    )
    assert parse_exports(text) == [
        ("/srv/data", "10.0.0.0/24", "rw,wdelay,root_squash,no_subtree_check,fsid=7"),
        ("/srv/with space", "@web", "ro,sync"),
        ("/srv/world", "<world>", "ro"),
    ]


# -- metadata ------------------------------------------------------------------------------------------------
def test_meta_data_comes_from_the_schema() -> None:
    root = ET.fromstring(agent_for("script").meta_data())
    assert root.get("name") == "script"
    params = {p.get("name"): p for p in root.iter("parameter")}
    assert list(params) == ["name", "file", "service_name"]
    assert params["file"].get("required") == "1" and params["name"].get("primary") == "1"
    assert params["service_name"].get("inherit") == "service%name"
    status = [a for a in root.iter("action") if a.get("name") == "status"]
    assert [(a.get("interval"), a.get("timeout")) for a in status] == [("30", "60")]

    ip = ET.fromstring(agent_for("ip").meta_data())
    assert [(a.get("interval"), a.get("timeout")) for a in ip.iter("action") if a.get("name") == "status"] == [
        ("20", "10")
    ]
    assert ip.find("special/attributes").get("maxinstances") == "1"
    assert {c.get("type"): c.get("forbid") for c in ip.iter("child")} == {"nfsclient": "1", "nfsexport": "1"}
    fs = ET.fromstring(agent_for("fs").meta_data())
    assert {c.get("type"): (c.get("start"), c.get("stop")) for c in fs.iter("child")}["nfsexport"] == ("3", "1")
    mysql = ET.fromstring(agent_for("mysql").meta_data())
    defaults = {p.get("name"): p.find("content").get("default") for p in mysql.iter("parameter")}
    assert defaults["config_file"] == "/etc/my.cnf" and defaults["startup_wait"] == "30"
    nfsclient = agent_for("nfsclient")
    assert "recover" in [a.name for a in nfsclient.actions()]
    assert agent_for("script")({"name": "s", "file": "/x"}).timeout("status") == 60
    assert agent_for("ip")({"address": "127.0.0.1"}).timeout("status") == 10
    assert agent_for("ip").status_interval(0) == 20
    assert agent_for("script")({"name": "s", "file": "/x"}, timeouts={"start": 3}).timeout("start") == 3


def test_meta_data_op_through_run() -> None:
    result = agent_for("fs")({"name": "x"}).run("meta-data")
    assert result.ok and result.message.startswith('<?xml version="1.0"?>\n<resource-agent name="fs"')


def test_recover_only_where_the_type_has_it() -> None:
    assert agent_for("script")({"name": "s", "file": "/x"}).recover().rc == OCF.ERR_UNIMPLEMENTED
    assert agent_for("service")({"name": "www"}).recover().ok


def test_lvm_names_are_checked_before_running_anything() -> None:
    result = agent_for("lvm")({"name": "v", "vg_name": "-ay; reboot"}).validate()
    assert result.rc == OCF.ERR_CONFIGURED and result.message == "lvm: vg_name='-ay; reboot' is not a valid LVM name"


# -- fs on real mounts ---------------------------------------------------------------------------------------
@pytest.fixture
def mount_dir(tmp_path: Path):
    target = tmp_path / "mnt"
    target.mkdir()
    probe = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "rgm-probe", str(target)],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {probe.stderr.strip()}")
    subprocess.run(["umount", str(target)], check=True, timeout=30)
    try:
        yield target
    finally:
        for _ in range(3):
            if mounted_at(str(target)) is None:
                break
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def test_fs_tmpfs_mount_status_and_unmount(mount_dir: Path) -> None:
    agent = agent_for("fs")({"name": "scratch", "device": "rgmscratch", "fstype": "tmpfs",
                             "mountpoint": str(mount_dir), "options": "size=2m,mode=0750"})
    assert agent.status().rc == OCF.NOT_RUNNING
    started = agent.start()
    assert started.ok, started
    entry = mounted_at(str(mount_dir))
    assert entry is not None and entry.fstype == "tmpfs" and entry.source == "rgmscratch"
    assert agent.start().message == f"rgmscratch is already mounted on {mount_dir}"
    assert agent.status(20).ok
    assert agent.stop().ok
    assert mounted_at(str(mount_dir)) is None
    assert agent.stop().message == f"{mount_dir} is not mounted"


def test_fs_busy_unmount_fails_clearly_then_force_unmount_kills_the_user(mount_dir: Path) -> None:
    attrs = {"name": "busy", "device": "rgmbusy", "fstype": "tmpfs", "mountpoint": str(mount_dir)}
    assert agent_for("fs")(attrs).start().ok
    holder = subprocess.Popen(["sleep", "300"], cwd=mount_dir, start_new_session=True)
    try:
        refused = agent_for("fs")(attrs).stop()
        assert refused.rc == OCF.ERR_GENERIC
        assert refused.message.startswith(f"cannot unmount {mount_dir}: ")
        assert refused.message.endswith('(set force_unmount="1" to kill processes using it)')
        assert mounted_at(str(mount_dir)) is not None
        forced = agent_for("fs")({**attrs, "force_unmount": "1"}, log=lambda line: None).stop()
        assert forced.ok, forced
        assert holder.wait(timeout=10) == -signal.SIGKILL
        assert mounted_at(str(mount_dir)) is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.kill()
        holder.wait(timeout=10)


def test_fs_another_device_on_the_mountpoint_is_an_error(mount_dir: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "rgmother", str(mount_dir)], check=True, timeout=30)
    image = mount_dir.parent / "disk.img"
    image.write_bytes(b"")
    result = agent_for("fs")({"name": "x", "device": str(image), "mountpoint": str(mount_dir)}).start()
    assert result.rc == OCF.ERR_GENERIC
    assert result.message == f"{mount_dir} already has rgmother mounted, not {image}"


def _loop_devices_usable(image: Path) -> str | None:
    """None if a loop device can be attached to `image` here (checked, then detached), else the reason."""
    if not shutil.which("losetup"):
        return "losetup is not installed"
    probe = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"losetup cannot attach a loop device: {probe.stderr.strip()}"
    subprocess.run(["losetup", "-d", probe.stdout.strip()], capture_output=True, timeout=30)
    return None


def _fake_program(bin_dir: Path, name: str, body: str) -> Path:
    """A program written by the test, found first on PATH: a recorder standing in for one that must not run
    for real here (it would act on the host) or whose argv must be seen exactly."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


RECORD_ARGV = """import json, os, sys
with open(os.environ["RGM_RECORD"], "a") as fh:
    fh.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
"""


def _recorded(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_fs_loop_image_with_fsck(mount_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not shutil.which("mkfs.ext4") or not Path("/dev/loop-control").exists():
        pytest.skip("needs mkfs.ext4 and /dev/loop-control for a loop-mounted image")
    image = mount_dir.parent / "ext4.img"
    with open(image, "wb") as fh:
        fh.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True, timeout=60)
    reason = _loop_devices_usable(image)
    if reason:
        pytest.skip(reason)  # decided before the agent runs, so an agent failure is never mistaken for it
    debugfs = shutil.which("debugfs")
    record = mount_dir.parent / "fsck-record"
    if debugfs:
        # mark the file system as having errors: fsck -p must then really check it and say it corrected them
        subprocess.run([debugfs, "-w", "-R", "ssv state 2", str(image)], check=True, capture_output=True, timeout=30)
    else:  # record that fsck ran on the image, then run the real one
        real = shutil.which("fsck")
        exec_real = f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n"
        _fake_program(mount_dir.parent / "bin", "fsck", RECORD_ARGV + exec_real)
        monkeypatch.setenv("PATH", f"{mount_dir.parent / 'bin'}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("RGM_RECORD", str(record))
    agent = agent_for("fs")({"name": "data", "device": str(image), "fstype": "ext4", "options": "loop",
                             "force_fsck": "1", "mountpoint": str(mount_dir)})
    started = agent.start()
    assert started.ok, started
    try:
        if debugfs:
            assert started.message == f"{image} mounted on {mount_dir} (fsck corrected errors (exit 1))"
        else:
            assert _recorded(record) == [["fsck", "-p", "-t", "ext4", str(image)]]
        (mount_dir / "file").write_text("kept")
        assert agent.status(20).ok
        assert agent.start().message.endswith("is already mounted on " + str(mount_dir))
    finally:
        assert agent.stop().ok
    assert mounted_at(str(mount_dir)) is None
    again = agent.start()  # fsck -p of a clean file system passes quietly; the data survived
    assert again.ok and again.message == f"{image} mounted on {mount_dir}"
    try:
        assert (mount_dir / "file").read_text() == "kept"
    finally:
        assert agent.stop().ok


def test_fsck_gets_the_device_as_its_own_argument_not_after_double_dash(tmp_path: Path, monkeypatch) -> None:
    # util-linux fsck hands what follows "--" to the checker and then checks every /etc/fstab file system
    record = tmp_path / "record"
    _fake_program(tmp_path / "bin", "fsck", RECORD_ARGV + "sys.exit(8)\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RGM_RECORD", str(record))
    device = str(tmp_path / "disk.img")
    result = agent_for("fs")({"name": "d", "device": device, "fstype": "ext4", "force_fsck": "1",
                              "mountpoint": str(tmp_path / "mnt")}).start()
    assert _recorded(record) == [["fsck", "-p", "-t", "ext4", device]]
    assert result.rc == OCF.ERR_GENERIC and result.message.startswith(f"fsck of {device} failed (exit 8)")
    tagged = agent_for("fs")({"name": "d", "device": "UUID=1234-abcd", "force_fsck": "1",
                              "mountpoint": str(tmp_path / "mnt")})
    assert tagged.fsck_argv() == ["fsck", "-p", "UUID=1234-abcd"] and tagged.validate().ok


@pytest.mark.parametrize(
    ("device", "fstype", "message"),
    [
        ("-a", "ext4", "fs: device '-a' may not start with '-'"),
        ("--version", "tmpfs", "fs: device '--version' may not start with '-'"),
        ("disk.img", "ext4", "fs: device 'disk.img' is not an absolute path or LABEL=, UUID=, PARTUUID=, PARTLABEL="),
        ("LABEL=", "ext4", "fs: device 'LABEL=' is not an absolute path or LABEL=, UUID=, PARTUUID=, PARTLABEL="),
    ],
)
def test_fs_hostile_or_relative_device_is_refused_before_anything_runs(tmp_path: Path, monkeypatch,
                                                                       device: str, fstype: str, message: str) -> None:
    record = tmp_path / "record"
    for name in ("fsck", "mount"):
        _fake_program(tmp_path / "bin", name, RECORD_ARGV)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RGM_RECORD", str(record))
    agent = agent_for("fs")({"name": "d", "device": device, "fstype": fstype, "force_fsck": "1",
                             "mountpoint": str(tmp_path / "mnt")})
    for result in (agent.validate(), agent.start()):
        assert result.rc == OCF.ERR_CONFIGURED and result.message == message
    assert _recorded(record) == [] and not (tmp_path / "mnt").exists()


def test_fs_tmpfs_takes_a_free_form_source_name() -> None:
    assert agent_for("fs")({"name": "t", "device": "scratch", "fstype": "tmpfs", "mountpoint": "/mnt/x"}).validate().ok


def test_force_unmount_kills_users_of_the_mount_by_device_not_by_path_text(mount_dir: Path) -> None:
    # `beneath` sits in the mount point directory *before* the mount: its cwd has the same path text but is on
    # the parent file system, does not keep the mount busy and must survive; `user` is on the mount.
    beneath = subprocess.Popen(["sleep", "300"], cwd=mount_dir, start_new_session=True)
    user = None
    try:
        attrs = {"name": "busy", "device": "rgmbusy2", "fstype": "tmpfs", "mountpoint": str(mount_dir),
                 "force_unmount": "1"}
        assert agent_for("fs")(attrs).start().ok
        user = subprocess.Popen(["sleep", "300"], cwd=mount_dir, start_new_session=True)
        assert agent_for("fs")(attrs, log=lambda line: None).stop().ok
        assert user.wait(timeout=10) == -signal.SIGKILL
        assert beneath.poll() is None and pid_alive(beneath.pid)
    finally:
        for proc in (beneath, user):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)


def test_fs_refuses_the_root_file_system_and_relative_mountpoints() -> None:
    root = agent_for("fs")({"name": "r", "device": "/dev/sda1", "mountpoint": "/"}).validate()
    assert root.rc == OCF.ERR_CONFIGURED and root.message == "fs: refusing to manage the root file system"
    rel = agent_for("fs")({"name": "r", "device": "/dev/sda1", "mountpoint": "mnt"}).validate()
    assert rel.rc == OCF.ERR_CONFIGURED and "is not an absolute path" in rel.message


# -- postgres, for real where it is installed ----------------------------------------------------------------
@pytest.mark.slow
def test_postgres_starts_serves_and_stops() -> None:
    initdb = next((p for p in ("/usr/lib/postgresql/15/bin/initdb", shutil.which("initdb") or "") if p
                   and os.access(p, os.X_OK)), None)
    if not find_program("postgres") or initdb is None:
        pytest.skip("PostgreSQL (postgres and initdb) is not installed")
    try:
        import pwd

        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("there is no 'postgres' user to run the server as")
    # postgres cannot traverse pytest's 0700 temporary directories, so it gets its own
    base = Path(tempfile.mkdtemp(prefix="rgm-pg-"))
    agent = None
    try:
        os.chmod(base, 0o755)
        data, run = base / "data", base / "run"
        data.mkdir()
        run.mkdir()
        for path in (data, run):
            os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True,
                       timeout=120, user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        agent = agent_for("postgres-8")(
            {"name": "db", "config_file": str(data / "postgresql.conf"),
             "postmaster_options": f"-D '{data}' -k '{run}' -h 127.0.0.1 -p {port}"},
            run_dir=str(run), timeouts={"start": 60},
        )
        assert agent.status().rc == OCF.NOT_RUNNING
        started = agent.start()
        assert started.ok, started
        pid = read_pid(agent.pid_file())
        assert pid is not None and pid_alive(pid)
        assert agent.status().ok
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert agent.stop().ok
        assert not pid_alive(pid)
        assert agent.status().rc == OCF.NOT_RUNNING
    finally:
        if agent is not None:
            pid = read_pid(agent.pid_file()) or read_pid(str(base / "data" / "postmaster.pid"))
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


# -- pid files are trusted only when they name the daemon ----------------------------------------------------
@pytest.mark.parametrize("rtype", ["apache", "postgres-8", "samba", "tomcat-6"])
def test_stale_pid_file_naming_an_unrelated_process_is_neither_running_nor_killed(tmp_path: Path,
                                                                                   rtype: str) -> None:
    unrelated = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        agent = agent_for(rtype)({"name": "web", "config_file": str(tmp_path / "none.conf")},
                                 run_dir=str(tmp_path / "run"), log=lambda line: None, timeouts={"stop": 5})
        Path(agent.pid_dir()).mkdir(parents=True)
        for path in agent.pid_files():
            Path(path).write_text(f"{unrelated.pid}\n")
        status = agent.status()
        assert not status.ok and "does not name a live" in status.message, status
        stopped = agent.stop()
        assert stopped.ok and stopped.message.endswith("is not running"), stopped
        assert unrelated.poll() is None and pid_alive(unrelated.pid)  # not signalled
        assert not any(os.path.exists(p) for p in agent.pid_files())  # the stale files are gone
    finally:
        unrelated.kill()
        unrelated.wait(timeout=10)


def test_pid_check_needs_the_program_name_and_the_uid() -> None:
    me = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        assert pid_is_daemon(me.pid, ["sleep"])
        assert pid_is_daemon(me.pid, ["sleep"], os.getuid())
        assert not pid_is_daemon(me.pid, ["sleep"], os.getuid() + 12345)  # right program, wrong user
        assert not pid_is_daemon(me.pid, ["httpd"])
        assert not pid_is_daemon(1, ["sleep", "init", "systemd", "tini", "sh", "bash", "python3"])
    finally:
        me.kill()
        me.wait(timeout=10)


# -- tomcat: catalina.sh evaluates CATALINA_OPTS and CATALINA_BASE with the shell ----------------------------
FAKE_CATALINA = """#!/bin/sh
# evaluates its settings the way catalina.sh does ("eval exec ... $CATALINA_OPTS ...")
eval "echo \\"$CATALINA_BASE\\" $CATALINA_OPTS" >> '{record}'
exit 0
"""


@pytest.mark.parametrize(("name", "value"), [
    ("catalina_options", "-Xmx1m; touch {canary}"),
    ("catalina_options", "$(touch {canary})"),
    ("catalina_base", "/srv/tc`touch {canary}`"),
    ("catalina_base", "/srv/tc\"; touch {canary}; \""),
])
def test_tomcat_refuses_shell_metacharacters_catalina_sh_would_evaluate(tmp_path: Path, name: str,
                                                                        value: str) -> None:
    home = tmp_path / "tomcat"
    (home / "bin").mkdir(parents=True)
    catalina = home / "bin" / "catalina.sh"
    catalina.write_text(FAKE_CATALINA.format(record=tmp_path / "record"))
    catalina.chmod(0o755)
    config = tmp_path / "tomcat.conf"
    config.write_text(f"CATALINA_HOME={home}\n")
    canary = tmp_path / "canary"
    hostile = value.format(canary=canary)
    agent = agent_for("tomcat-6")({"name": "tc", "config_file": str(config), "startup_wait": "1", name: hostile},
                                  run_dir=str(tmp_path / "run"), timeouts={"start": 5})
    for result in (agent.validate(), agent.start()):
        assert result.rc == OCF.ERR_CONFIGURED, result
        assert result.message.startswith(f"tomcat: {name}={hostile!r} holds ")
        assert result.message.endswith("catalina.sh evaluates it with the shell, so only letters, digits, "
                                       "spaces and -_.,:=/+@% are allowed")
    assert not canary.exists() and not (tmp_path / "record").exists()
    plain = agent_for("tomcat-6")({"name": "tc", "config_file": str(config),
                                   "catalina_options": "-Xmx512m -Dfile.encoding=UTF-8",
                                   "catalina_base": "/srv/tomcat/base-1"})
    assert plain.validate().ok


# -- nfs: target spellings -----------------------------------------------------------------------------------
def test_nfsclient_target_matches_exportfs_spelling() -> None:
    entries = parse_exports(
        "/srv/world    <world>(ro)\n"
        "/srv/net      10.0.0.0/24(rw)\n"
        "/srv/host     Client1.Example.COM(rw)\n"
    )
    assert is_exported(entries, "/srv/world", "*")
    assert is_exported(entries, "/srv/world", "<world>")
    assert is_exported(entries, "/srv/net", "10.0.0.0/255.255.255.0")
    assert is_exported(entries, "/srv/net", "10.0.0.0/24")
    assert is_exported(entries, "/srv/host", "client1.example.com")
    assert not is_exported(entries, "/srv/host", "client1")  # names are not resolved (documented)
    assert not is_exported(entries, "/srv/net", "10.0.1.0/24")
    assert not is_exported(entries, "/srv/world", "@web")
    assert normal_target("<world>") == normal_target("*") == "*"


# -- nfsserver: never removes exports it does not own --------------------------------------------------------
def test_nfsserver_leaves_other_exports_alone_and_start_is_idempotent(tmp_path: Path, monkeypatch) -> None:
    # The real programs would change the host's NFS server: recorders stand in for them; the thread count file
    # is the test's own.
    import rgmanager.agents.nfs as nfs

    threads = tmp_path / "threads"
    threads.write_text("0\n")
    record = tmp_path / "record"
    nfsd = RECORD_ARGV + f"open({str(threads)!r}, 'w').write(sys.argv[1] + '\\n')\n"
    _fake_program(tmp_path / "bin", "rpc.nfsd", nfsd)
    for name in ("rpc.mountd", "exportfs"):
        _fake_program(tmp_path / "bin", name, RECORD_ARGV)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RGM_RECORD", str(record))
    monkeypatch.setattr(nfs, "NFSD_THREADS", str(threads))
    agent = agent_for("nfsserver")({"name": "nfs", "path": "/srv/shared", "nfspath": ".clumanager/nfs"})
    started = agent.start()
    assert started.ok and started.message.startswith("NFS server started; NFS state is not moved to "
                                                     "/srv/shared/.clumanager/nfs (not implemented)")
    again = agent.start()
    assert again.ok and again.message.startswith("NFS server is already running (8 nfsd threads)")
    assert agent.status().ok
    stopped = agent.stop()
    assert stopped.ok, stopped
    assert _recorded(record) == [["rpc.mountd"], ["rpc.nfsd", "8"], ["rpc.nfsd", "0"]]  # no exportfs -r / -ua
    assert agent.status().rc == OCF.NOT_RUNNING


# -- vm: xmlfile reaches virsh as a named option's value -----------------------------------------------------
FAKE_VIRSH = RECORD_ARGV + """state = os.path.join(os.path.dirname(os.environ["RGM_RECORD"]), "vm-state")
args = [a for a in sys.argv[1:] if a not in ("-c", "qemu:///test")]
if args[0] == "domstate":
    print(open(state).read() if os.path.exists(state) else "shut off")
elif args[0] in ("create", "start"):
    open(state, "w").write("running")
"""


@pytest.mark.parametrize(("xmlfile", "message"), [
    ("-c qemu:///system", "vm: xmlfile '-c qemu:///system' must be an absolute path"),
    ("--help", "vm: xmlfile '--help' must be an absolute path"),
    ("guest.xml", "vm: xmlfile 'guest.xml' must be an absolute path"),
])
def test_vm_xmlfile_must_be_an_absolute_path(tmp_path: Path, monkeypatch, xmlfile: str, message: str) -> None:
    record = tmp_path / "record"
    _fake_program(tmp_path / "bin", "virsh", FAKE_VIRSH)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RGM_RECORD", str(record))
    agent = agent_for("vm")({"name": "guest", "xmlfile": xmlfile})
    for result in (agent.validate(), agent.start()):
        assert result.rc == OCF.ERR_CONFIGURED and result.message == message
    assert _recorded(record) == []


def test_vm_create_passes_xmlfile_with_file_option(tmp_path: Path, monkeypatch) -> None:
    record = tmp_path / "record"
    _fake_program(tmp_path / "bin", "virsh", FAKE_VIRSH)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RGM_RECORD", str(record))
    xml = str(tmp_path / "-guest.xml")
    started = agent_for("vm")({"name": "guest", "xmlfile": xml, "hypervisor_uri": "qemu:///test"}).start()
    assert started.ok, started
    assert _recorded(record)[-1] == ["virsh", "-c", "qemu:///test", "create", "--file", xml]
