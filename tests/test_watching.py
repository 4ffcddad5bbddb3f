# SPDX-License-Identifier: MIT
"""What a poll under an inotify watch stats again (decide.watching), and
the filesystem type a directory is on (spool.directory.filesystem)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from waitd.decide.watching import restat_after_listing, sees_every_change
from waitd.spool.directory import filesystem


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs"])
def test_a_local_filesystem_reports_every_change(fstype: str) -> None:
    assert sees_every_change(fstype)


@pytest.mark.parametrize("fstype", [None, "nfs", "nfs4", "cifs", "smb3", "fuse", "fuse.sshfs", "fuseblk", "9p", "ceph"])
def test_a_network_or_unknown_filesystem_may_not(fstype: str | None) -> None:
    assert not sees_every_change(fstype)


def test_under_a_watch_only_the_known_symlinks_are_stat_ed_again() -> None:
    known, links = {"a", "b", "gone"}, {"b", "gone"}
    assert restat_after_listing({"a", "b", "new"}, known, links, sees_all=True) == ["b"]


def test_on_a_network_filesystem_every_known_name_listed_is() -> None:
    known, links = {"a", "b", "gone"}, {"b"}
    assert sorted(restat_after_listing({"a", "b", "new"}, known, links, sees_all=False)) == ["a", "b"]


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 27 0:45 / /srv/in rw,relatime - nfs4 server:/export rw
41 27 0:46 / /srv/my\\040spool rw,relatime - cifs //host/share rw
42 27 8:17 /sub /data rw - xfs /dev/sdb1 rw
"""


@pytest.fixture
def mountinfo(tmp_path: Path) -> str:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return str(path)


def test_the_type_is_found_by_device(mountinfo: str) -> None:
    assert filesystem("/anywhere", os.makedev(0, 45), mountinfo) == "nfs4"
    assert filesystem("/anywhere", os.makedev(8, 17), mountinfo) == "xfs"


def test_else_by_the_longest_mount_point_of_its_path(mountinfo: str) -> None:
    # a device the table does not name (a btrfs subvolume's): its mount point
    assert filesystem("/srv/in/sub", os.makedev(0, 99), mountinfo) == "nfs4"
    assert filesystem("/srv/my spool", os.makedev(0, 99), mountinfo) == "cifs"
    assert filesystem("/srv/inbox", os.makedev(0, 99), mountinfo) == "ext4"


def test_no_table_no_type(tmp_path: Path) -> None:
    assert filesystem("/", os.makedev(8, 1), str(tmp_path / "none")) is None
