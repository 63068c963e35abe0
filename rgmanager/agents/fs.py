"""The `fs` and `clusterfs` agents: mount a file system on its mount point, unmount it, check it.

start: create the mount point if needed, run `fsck -p [-t FSTYPE] DEVICE` first when force_fsck="1" (no `--`:
util-linux fsck hands everything after `--` to the checker and would then check every /etc/fstab file system),
then `mount [-t FSTYPE] [-o OPTIONS] -- DEVICE MOUNTPOINT`. The device must be an absolute path or a
LABEL=/UUID=/PARTUUID=/PARTLABEL= tag (a "nodev" file system such as tmpfs takes any source name), and never
starts with "-". An existing mount of the same device there is success; a different one is an error.
stop: `umount -- MOUNTPOINT`; with force_unmount="1", processes using the file system (their cwd, root,
executable or an open file on the mount's device, compared by st_dev as `fuser -m` does) are killed with
SIGKILL and the unmount is retried, up to three times. status: the
mount point is mounted (/proc/self/mountinfo); depth 10 also lists it (read test), depth 20 also creates and
removes a file (write test) unless the mount is read-only; quick_status="1" limits status to the mount check.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
from dataclasses import dataclass

from rgmanager.agents.base import OCF, Agent, AgentError, Result, register

UNMOUNT_TRIES = 3
DEVICE_TAGS = ("LABEL=", "UUID=", "PARTUUID=", "PARTLABEL=")


def nodev_fstypes(path: str = "/proc/filesystems") -> set[str]:
    """File system types the kernel marks "nodev" (tmpfs, proc, ...): their source is a free-form name."""
    try:
        with open(path) as fh:
            return {line.split()[1] for line in fh if line.startswith("nodev") and len(line.split()) == 2}
    except OSError:
        return {"tmpfs", "ramfs"}


@dataclass(frozen=True, slots=True)
class MountEntry:
    mountpoint: str
    source: str
    fstype: str
    options: tuple[str, ...]
    device_number: tuple[int, int]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[MountEntry]:
    entries = []
    with open(mountinfo) as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 6 or len(tail) < 2:
                continue
            major, _, minor = fields[2].partition(":")
            entries.append(MountEntry(
                _unescape(fields[4]), _unescape(tail[1]), tail[0], tuple(fields[5].split(",")),
                (int(major), int(minor)),
            ))
    return entries


def mounted_at(mountpoint: str) -> MountEntry | None:
    """The topmost mount on `mountpoint`, or None."""
    target = os.path.realpath(mountpoint)
    found = None
    for entry in mounts():
        if entry.mountpoint == target:
            found = entry
    return found


def _loop_backing_file(source: str) -> str | None:
    name = os.path.basename(source)
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as fh:
            return fh.read().strip()
    except OSError:
        return None


def device_matches(entry: MountEntry, device: str) -> bool | None:
    """Whether the mount comes from `device`: True, False, or None when it cannot be told (LABEL=, tmpfs...)."""
    if device.startswith(DEVICE_TAGS):
        return None
    if os.path.exists(device):
        st = os.stat(device)
        if stat.S_ISBLK(st.st_mode):
            return (os.major(st.st_rdev), os.minor(st.st_rdev)) == entry.device_number
        if stat.S_ISREG(st.st_mode):  # an image mounted through a loop device
            if not entry.source.startswith("/dev/loop"):
                return False
            backing = _loop_backing_file(entry.source)
            return None if backing is None else os.path.realpath(backing) == os.path.realpath(device)
    return entry.source == device


def processes_using(device_number: tuple[int, int]) -> list[int]:
    """Pids whose cwd, root, executable or an open file is on the file system with this device number
    (what `fuser -m` finds). Compared by st_dev, never by path text: a process sitting in the mount point
    directory underneath the mount, or in another mount namespace, is not a user of the mount."""
    wanted = os.makedev(*device_number)
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        links = [f"/proc/{name}/{link}" for link in ("cwd", "root", "exe")]
        with contextlib.suppress(OSError):
            links += [f"/proc/{name}/fd/{fd}" for fd in os.listdir(f"/proc/{name}/fd")]
        for link in links:
            try:
                if os.stat(link).st_dev == wanted:
                    found.append(int(name))
                    break
            except OSError:
                continue
    return found


@register
class FsAgent(Agent):
    type_name = "fs"
    description = "A file system mounted with mount(8), with optional fsck before mounting and forced unmount."
    programs = ("mount", "umount", "fsck")

    def device(self) -> str:
        return self.param("device") or ""

    def mountpoint(self) -> str:
        return os.path.normpath(self.param("mountpoint") or "")

    def fstype(self) -> str | None:
        return self.param("fstype")

    def check(self) -> None:
        mountpoint = self.param("mountpoint") or ""
        if not os.path.isabs(mountpoint):
            raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: mountpoint {mountpoint!r} is not an absolute path")
        if os.path.normpath(mountpoint) == "/":
            raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: refusing to manage the root file system")
        self.check_device()

    def check_device(self) -> None:
        """The device reaches mount and fsck as an argument: never an option, and a path or tag unless the
        file system type takes no device (tmpfs and the other "nodev" types)."""
        device = self.device()
        if not device:
            raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: device is empty")
        if device.startswith("-"):
            raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: device {device!r} may not start with '-'")
        if os.path.isabs(device) or (device.startswith(DEVICE_TAGS) and device.partition("=")[2]):
            return
        if self.fstype() in nodev_fstypes() and not self.flag("force_fsck"):
            return
        raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: device {device!r} is not an absolute path or "
                         "LABEL=, UUID=, PARTUUID=, PARTLABEL=")

    def mount_argv(self) -> list[str]:
        argv = ["mount"]
        if self.fstype():
            argv += ["-t", self.fstype() or ""]
        if self.param("options"):
            argv += ["-o", self.param("options") or ""]
        return [*argv, "--", self.device(), self.mountpoint()]

    def fsck_argv(self) -> list[str]:
        """`fsck -p [-t FSTYPE] DEVICE`. No `--`: util-linux fsck passes what follows `--` to the checker as
        its options and, with no device of its own, checks every file system in /etc/fstab. check_device()
        guarantees the device does not start with "-"."""
        argv = ["fsck", "-p"]
        if self.fstype():
            argv += ["-t", self.fstype() or ""]
        return [*argv, self.device()]

    def _fsck(self) -> str:
        """Run fsck when force_fsck is set; a note for the start message when it corrected errors."""
        if not self.flag("force_fsck"):
            return ""
        self.check_device()
        result = self.execute(self.fsck_argv(), what="fsck")
        if result.rc >= 4 or result.rc < 0:  # 0 clean, 1 errors corrected, 2 corrected, reboot advised
            detail = result.last_line()
            raise AgentError(OCF.ERR_GENERIC, f"fsck of {self.device()} failed (exit {result.rc}): {detail}")
        if result.rc:
            note = f"fsck corrected errors (exit {result.rc})"
            self.log(f"{self.type_name}: {note} on {self.device()}")
            return f" ({note})"
        return ""

    def _start(self) -> Result:
        mountpoint = self.mountpoint()
        entry = mounted_at(mountpoint)
        if entry is not None:
            if device_matches(entry, self.device()) is False:
                other = entry.source
                raise AgentError(OCF.ERR_GENERIC, f"{mountpoint} already has {other} mounted, not {self.device()}")
            return Result(OCF.SUCCESS, f"{self.device()} is already mounted on {mountpoint}")
        self._prepare()
        os.makedirs(mountpoint, exist_ok=True)
        note = self._fsck()
        self.execute(self.mount_argv(), check=True, what=f"mount of {self.device()} on {mountpoint}")
        return Result(OCF.SUCCESS, f"{self.device()} mounted on {mountpoint}{note}")

    def _prepare(self) -> None:
        """Hook: checks before mounting (netfs requires the mount helper)."""

    def _stop(self) -> Result:
        mountpoint = self.mountpoint()
        if mounted_at(mountpoint) is None:
            return Result(OCF.SUCCESS, f"{mountpoint} is not mounted")
        last = ""
        for attempt in range(1, UNMOUNT_TRIES + 1):
            result = self.execute(["umount", "--", mountpoint], what=f"umount {mountpoint}")
            entry = mounted_at(mountpoint)
            if result.rc == 0 and entry is None:
                return Result(OCF.SUCCESS, f"{mountpoint} unmounted")
            last = result.last_line()
            if not self.flag("force_unmount") or entry is None:
                break
            killed = self._kill_users(entry)
            self.log(f"{self.type_name}: unmount attempt {attempt} of {mountpoint} failed; killed {killed} process(es)")
            device_number = entry.device_number
            self.wait_until(lambda: not processes_using(device_number), limit=1.0)  # noqa: B023 - used at once
        hint = "" if self.flag("force_unmount") else " (set force_unmount=\"1\" to kill processes using it)"
        fence = "; self_fence is set: this node must be fenced" if self.flag("self_fence") else ""
        raise AgentError(OCF.ERR_GENERIC, f"cannot unmount {mountpoint}: {last}{hint}{fence}")

    def _kill_users(self, entry: MountEntry) -> int:
        if os.stat("/").st_dev == os.makedev(*entry.device_number):
            self.log(f"{self.type_name}: {entry.mountpoint} is on the root file system's device; killing nothing")
            return 0
        pids = processes_using(entry.device_number)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def _status(self, depth: int) -> Result:
        mountpoint = self.mountpoint()
        entry = mounted_at(mountpoint)
        if entry is None:
            return Result(OCF.NOT_RUNNING, f"{mountpoint} is not mounted")
        if device_matches(entry, self.device()) is False:
            return Result(OCF.ERR_GENERIC, f"{mountpoint} has {entry.source} mounted, not {self.device()}")
        if self.flag("quick_status") or depth < 10:
            return Result(OCF.SUCCESS, f"{self.device()} is mounted on {mountpoint}")
        os.listdir(mountpoint)
        if depth >= 20 and "ro" not in entry.options:
            probe = os.path.join(mountpoint, f".rgmanager-status-{os.getpid()}")
            with open(probe, "w") as fh:
                fh.write("ok\n")
            os.unlink(probe)
        return Result(OCF.SUCCESS, f"{self.device()} on {mountpoint} passed the depth {depth} check")


@register
class ClusterFsAgent(FsAgent):
    type_name = "clusterfs"
    description = "A GFS/GFS2 cluster file system (mounted like fs; fstype defaults to gfs2)."

    def fstype(self) -> str | None:
        return self.param("fstype") or "gfs2"
