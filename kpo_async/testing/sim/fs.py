"""In-memory filesystems: emptyDir volumes shared by a pod's containers, per-container scratch."""

from __future__ import annotations

import asyncio
import posixpath

_SCRATCH_DIRS = (
    "bin",
    "dev",
    "etc",
    "home",
    "mnt",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "srv",
    "sys",
    "tmp",
    "usr",
    "usr/bin",
    "usr/local",
    "usr/local/bin",
    "usr/sbin",
    "var",
    "var/log",
    "var/tmp",
)


class FsError(Exception):
    """An errno-like failure; str() is the strerror text ("No such file or directory")."""


ENOENT = "No such file or directory"
EEXIST = "File exists"
EISDIR = "Is a directory"
ENOTDIR = "Not a directory"
EROFS = "Read-only file system"
ENOTEMPTY = "Directory not empty"


_SCRATCH_BASE = frozenset(_SCRATCH_DIRS) | {""}


class _Dirs(set):  # type: ignore[type-arg]
    """A set of directories on top of a shared read-mostly base (saves memory per container)."""

    __slots__ = ("base", "removed")

    def __init__(self, base: frozenset[str] = frozenset({""})) -> None:
        super().__init__()
        self.base = base
        self.removed: set[str] = set()

    def __contains__(self, item: object) -> bool:
        return super().__contains__(item) or (item in self.base and item not in self.removed)

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield from super().__iter__()
        for d in self.base:
            if d not in self.removed and not super().__contains__(d):
                yield d

    def add(self, item: str) -> None:
        super().add(item)
        self.removed.discard(item)

    def discard(self, item: object) -> None:
        super().discard(item)
        if item in self.base:
            self.removed.add(item)  # type: ignore[arg-type]


class Volume:
    __slots__ = ("dirs", "files", "name", "notifier")

    def __init__(self, name: str, notifier: Notifier, base_dirs: frozenset[str] = frozenset({""})) -> None:
        self.name = name
        self.files: dict[str, bytearray] = {}
        self.dirs = _Dirs(base_dirs)
        self.notifier = notifier


class Notifier:
    """Wakes waiters whenever any file of the pod changes (used to idle polling loops cheaply)."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    def event(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event


class PodFS:
    """The volumes of one pod (every volume type is an empty directory in the simulator)."""

    def __init__(self, volume_names: list[str]) -> None:
        self.notifier = Notifier()
        self.volumes = {name: Volume(name, self.notifier) for name in volume_names}

    def container_fs(self, mounts: list[dict[str, object]], hostname: str) -> ContainerFS:
        return ContainerFS(self, mounts, hostname)


class ContainerFS:
    def __init__(self, pod_fs: PodFS, mounts: list[dict[str, object]], hostname: str) -> None:
        self.pod_fs = pod_fs
        self.scratch = Volume("scratch", pod_fs.notifier, _SCRATCH_BASE)
        self.scratch.files["etc/hostname"] = bytearray(hostname.encode() + b"\n")
        self.scratch.files["dev/termination-log"] = bytearray()
        self.mounts: list[tuple[str, Volume, str, bool]] = []
        for m in mounts:
            vol = pod_fs.volumes.get(str(m.get("name", "")))
            if vol is None:
                continue
            path = posixpath.normpath("/" + str(m.get("mountPath", "")).strip("/"))
            sub = str(m.get("subPath") or "").strip("/")
            if sub:
                parts = sub.split("/")
                for k in range(1, len(parts) + 1):
                    vol.dirs.add("/".join(parts[:k]))
            self.mounts.append((path, vol, sub, bool(m.get("readOnly", False))))
            parent = path.strip("/")
            while parent:
                self.scratch.dirs.add(parent)
                parent = posixpath.dirname(parent)
        self.mounts.sort(key=lambda t: len(t[0]), reverse=True)

    @property
    def notifier(self) -> Notifier:
        return self.pod_fs.notifier

    def resolve(self, path: str) -> tuple[Volume, str, bool]:
        """(volume, path inside it, read-only) for an absolute normalized path."""
        for mpath, vol, sub, ro in self.mounts:
            if path == mpath or path.startswith(mpath + "/") or mpath == "/":
                rel = path[len(mpath) :].strip("/")
                if sub:
                    rel = f"{sub}/{rel}" if rel else sub
                return vol, rel, ro
        return self.scratch, path.strip("/"), False

    def is_mount_point(self, path: str) -> bool:
        return any(path == m[0] for m in self.mounts)

    # --- queries ---
    def exists(self, path: str) -> bool:
        vol, rel, _ = self.resolve(path)
        return rel in vol.files or rel in vol.dirs

    def is_file(self, path: str) -> bool:
        vol, rel, _ = self.resolve(path)
        return rel in vol.files

    def is_dir(self, path: str) -> bool:
        vol, rel, _ = self.resolve(path)
        return rel in vol.dirs

    def size(self, path: str) -> int:
        vol, rel, _ = self.resolve(path)
        return len(vol.files.get(rel, b""))

    def read(self, path: str) -> bytes:
        vol, rel, _ = self.resolve(path)
        if rel in vol.dirs:
            raise FsError(EISDIR)
        data = vol.files.get(rel)
        if data is None:
            raise FsError(ENOENT)
        return bytes(data)

    def listdir(self, path: str) -> list[str]:
        vol, rel, _ = self.resolve(path)
        if rel in vol.files:
            raise FsError(ENOTDIR)
        if rel not in vol.dirs:
            raise FsError(ENOENT)
        prefix = rel + "/" if rel else ""
        names = {
            p[len(prefix) :] for p in list(vol.files) + list(vol.dirs) if p.startswith(prefix) and p != rel
        }
        out = {n for n in names if n and "/" not in n}
        for mpath, *_ in self.mounts:
            if posixpath.dirname(mpath) == path and mpath != path:
                out.add(posixpath.basename(mpath))
        return sorted(out)

    # --- mutations ---
    def _parent_ok(self, vol: Volume, rel: str) -> None:
        parent = posixpath.dirname(rel)
        if parent in vol.files:
            raise FsError(ENOTDIR)
        if parent not in vol.dirs:
            raise FsError(ENOENT)

    def write(self, path: str, data: bytes, append: bool = False) -> None:
        vol, rel, ro = self.resolve(path)
        if ro:
            raise FsError(EROFS)
        if rel in vol.dirs:
            raise FsError(EISDIR)
        self._parent_ok(vol, rel)
        buf = vol.files.get(rel)
        if buf is None or not append:
            vol.files[rel] = bytearray(data)
        else:
            buf += data
        self.notifier.notify()

    def touch(self, path: str) -> None:
        vol, rel, ro = self.resolve(path)
        if rel in vol.files or rel in vol.dirs:
            return
        if ro:
            raise FsError(EROFS)
        self._parent_ok(vol, rel)
        vol.files[rel] = bytearray()
        self.notifier.notify()

    def mkdir(self, path: str, parents: bool = False) -> None:
        vol, rel, ro = self.resolve(path)
        if rel in vol.dirs or rel in vol.files:
            if parents and rel in vol.dirs:
                return
            raise FsError(EEXIST)
        if ro:
            raise FsError(EROFS)
        if parents:
            parts = rel.split("/")
            for k in range(1, len(parts) + 1):
                sub = "/".join(parts[:k])
                if sub in vol.files:
                    raise FsError(ENOTDIR)
                vol.dirs.add(sub)
        else:
            self._parent_ok(vol, rel)
            vol.dirs.add(rel)
        self.notifier.notify()

    def remove(self, path: str, recursive: bool = False) -> None:
        vol, rel, ro = self.resolve(path)
        if rel not in vol.files and rel not in vol.dirs:
            raise FsError(ENOENT)
        if ro:
            raise FsError(EROFS)
        if rel in vol.files:
            del vol.files[rel]
        else:
            if not recursive:
                raise FsError(EISDIR)
            if rel == "":
                vol.files.clear()
                for d in [d for d in vol.dirs if d]:
                    vol.dirs.discard(d)
            else:
                prefix = rel + "/"
                for f in [f for f in vol.files if f.startswith(prefix)]:
                    del vol.files[f]
                for d in [d for d in vol.dirs if d == rel or d.startswith(prefix)]:
                    vol.dirs.discard(d)
        self.notifier.notify()
