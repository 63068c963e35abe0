"""The other agents: clear messages for absent programs, real behaviour where the program exists (fs on tmpfs
and on a loop-mounted ext4 image, postgres), the nfs argv shapes, and the metadata generated from the schema."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cluster_conf.schema import RESOURCE_TYPES
from rgmanager.agents import OCF, UnknownAgentType, agent_for, known_agents
from rgmanager.agents.base import find_program, pid_alive, read_pid
from rgmanager.agents.fs import mounted_at
from rgmanager.agents.nfs import export_argv, parse_exports, unexport_argv

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


def test_fs_loop_image_with_fsck(mount_dir: Path) -> None:
    if not shutil.which("mkfs.ext4") or not Path("/dev/loop-control").exists():
        pytest.skip("needs mkfs.ext4 and /dev/loop-control for a loop-mounted image")
    image = mount_dir.parent / "ext4.img"
    with open(image, "wb") as fh:
        fh.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True, timeout=60)
    agent = agent_for("fs")({"name": "data", "device": str(image), "fstype": "ext4", "options": "loop",
                             "force_fsck": "1", "mountpoint": str(mount_dir)})
    started = agent.start()
    if not started.ok and "loop" in started.message.lower():
        pytest.skip(f"loop devices cannot be set up here: {started.message}")
    assert started.ok, started
    try:
        (mount_dir / "file").write_text("kept")
        assert agent.status(20).ok
        assert agent.start().message.endswith("is already mounted on " + str(mount_dir))
    finally:
        assert agent.stop().ok
    assert mounted_at(str(mount_dir)) is None
    assert agent.start().ok  # fsck -p of a clean file system passes; the data survived
    try:
        assert (mount_dir / "file").read_text() == "kept"
    finally:
        assert agent.stop().ok


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
