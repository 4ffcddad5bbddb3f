# SPDX-License-Identifier: MIT
"""What a poll stats again of the files it knows, watched or not.

Without an inotify watch (--poll, inotify not to be had) only a stat sees
a file rewritten in place (same name, no new directory entry): a poll
stats every known file.  Under a watch the kernel reports each change
made through it (a close after writing, a touch, a rename, a removal),
so a listing stats only the names it did not know, and forgets the ones
gone; the known files are stat'ed again, a slice a turn, only where the
kernel may not see a change:

- a directory on a network or user-space filesystem (NFS, CIFS, FUSE,
  ...: `sees_every_change`), whose other hosts change files unseen;
- a symbolic link, whose target's changes reach no watch of the spool.

The caller adds a watch before the listing that follows it, and stats
every file at that listing (the first, or one of a directory that
replaced the last), so that no change falls between the two.

This module is pure: names and facts in, names out.
"""

from __future__ import annotations

from collections.abc import Collection

# Filesystems whose files other hosts (or a user-space server) change
# without the local kernel's inotify hearing of it.
NETWORK = frozenset(
    {
        "9p",
        "afs",
        "beegfs",
        "ceph",
        "cifs",
        "coda",
        "gfs2",
        "glusterfs",
        "gpfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "ocfs2",
        "smb3",
        "smbfs",
        "virtiofs",
    }
)


def sees_every_change(fstype: str | None) -> bool:
    """Whether inotify on a directory of this filesystem type reports every
    change of its files (None: the type is not known, so it may not)."""
    if fstype is None:
        return False
    return fstype not in NETWORK and fstype != "fuse" and not fstype.startswith(("fuse.", "fuseblk"))


def restat_after_listing(
    listed: Collection[str], known: Collection[str], links: Collection[str], sees_all: bool
) -> list[str]:
    """The known names a listing under a watch leaves to be stat'ed again
    (a slice a turn): of `known`, those `listed`; where the watch sees
    every change (`sees_all`, `sees_every_change`), only the `links`."""
    if sees_all:
        return [n for n in links if n in listed]
    return [n for n in known if n in listed]
