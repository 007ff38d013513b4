"""Roles are ordered: each one may do everything the roles below it may."""

from enum import IntEnum


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()
