"""Shared by the finisher's tests: a stand-in for what a Finisher asks of a job."""

from __future__ import annotations


class LoggedJob:
    """What a Finisher asks of a job (transfer.FileJob's finisher steps), logged."""

    def __init__(self, dir_fd: int, log: list[tuple[str, int]], n: int) -> None:
        self.dir_fd = dir_fd  # its open directory (tree.py), fsynced once per batch
        self.config = type("Cfg", (), {"fsync": True})()
        self.log, self.n = log, n

    def move_into_place(self) -> bool:
        self.log.append(("move", self.n))
        return True

    def finished_off(self) -> None:
        self.log.append(("done", self.n))
