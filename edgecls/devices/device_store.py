"""edgecls' cache on the device: ``~/.cache/edgecls/device``, mode 700, entries named by content hash.

Sent over ssh and run there (``python3 -c SOURCE COMMAND ...``), so it is stdlib-only and runs on
Python 3.7+. Commands (each prints one JSON value):

  prepare          make the cache (mode 700; an existing one is set to 700), print its absolute path
  missing KEY...   the keys that have no entry yet
  unpack           a tar stream on stdin: each top-level folder ``KEY/`` becomes the entry ``KEY``

An entry appears by one rename from a private temporary folder, so a copy cut off half-way never
looks complete, and an entry already there is left as it is: its name is its content. Only
edgecls' own files are written, and only inside the cache.
"""

import json
import os
import re
import shutil
import sys
import tarfile
import tempfile

CACHE = os.path.join("~", ".cache", "edgecls", "device")
KEY = re.compile(r"^[0-9a-f]{16,64}$")


def cache_folder():
    return os.path.join(os.path.expanduser(CACHE))


def prepare():
    folder = cache_folder()
    if os.path.islink(folder):
        raise SystemExit("error: %s is a symbolic link; edgecls keeps its cache in a real folder" % folder)
    old = os.umask(0o077)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    finally:
        os.umask(old)
    if os.stat(folder).st_uid != os.getuid():
        raise SystemExit("error: %s belongs to another user" % folder)
    os.chmod(folder, 0o700)
    return os.path.realpath(folder)


def missing(keys):
    folder = cache_folder()
    for key in keys:
        if not KEY.match(key):
            raise SystemExit("error: not a cache key: %r" % key)
    return [key for key in keys if not os.path.isdir(os.path.join(folder, key))]


def _safe_members(archive):
    for member in archive:
        parts = member.name.split("/")
        if (member.name.startswith("/") or ".." in parts or not KEY.match(parts[0])
                or not (member.isfile() or member.isdir())):
            raise SystemExit("error: refused entry in the copy: %r" % member.name)
        member.mode = 0o700 if member.isdir() else 0o600
        member.uid = member.gid = os.getuid()
        yield member


def unpack(stream):
    folder = prepare()
    staging = tempfile.mkdtemp(prefix=".incoming-", dir=folder)
    added = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in _safe_members(archive):
                if hasattr(tarfile, "data_filter"):  # Python 3.12+: its own checks too, and no warning
                    archive.extract(member, staging, set_attrs=False, filter="data")
                else:
                    archive.extract(member, staging, set_attrs=False)
        for key in sorted(os.listdir(staging)):
            target = os.path.join(folder, key)
            if os.path.isdir(target):
                continue
            os.rename(os.path.join(staging, key), target)
            added.append(key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return added


def main(argv):
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "prepare":
        result = prepare()
    elif command == "missing":
        prepare()
        result = missing(args)
    elif command == "unpack":
        result = unpack(sys.stdin.buffer)
    else:
        raise SystemExit("error: unknown device_store command %r" % command)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
