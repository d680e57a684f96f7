"""Officer accounts: create, authenticate, change role or password, deactivate.

Passwords are hashed with werkzeug's default (scrypt). Every function takes the session
factory and commits its own transaction, so the CLI, the web UI and tests share them.
Messages of ``UserError`` are Vietnamese: the admin page shows them as they are.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from broadcaster.domain import nfc
from broadcaster.models import Role, User
from broadcaster.web.sessions import end_user_sessions

_LOGGER = logging.getLogger(__name__)

MIN_PASSWORD_LEN = 8
MAX_PASSWORD_LEN = 200
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,49}$")
ROLE_LABELS_VI = {
    Role.ADMIN.value: "Quản trị",
    Role.EDITOR.value: "Biên tập",
    Role.APPROVER.value: "Phê duyệt",
}
# Checked when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("loa-xa-not-a-user")


class UserError(Exception):
    """Invalid account data, with a message for the admin (Vietnamese)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class UserInfo:
    """A detached, read-only view of an account (what the session and templates use)."""

    id: int
    username: str
    display_name: str
    role: str
    active: bool
    created: datetime | None
    # Changes whenever the password does (a digest of the stored hash): the session keeps it, and a
    # cookie with another stamp is refused, so a password change logs out every other session.
    password_stamp: str = field(default="", repr=False)

    @property
    def role_label(self) -> str:
        return ROLE_LABELS_VI.get(self.role, self.role)

    @classmethod
    def of(cls, user: User) -> UserInfo:
        return cls(
            user.id,
            user.username,
            user.display_name or user.username,
            user.role,
            user.active,
            user.created,
            password_stamp=password_stamp(user.password_hash),
        )


def password_stamp(password_hash: str) -> str:
    """A short digest of a stored password hash (never the hash itself, which must not reach a cookie)."""
    return hashlib.sha256(f"loa-pwv:{password_hash}".encode()).hexdigest()[:20]


def normalize_username(username: str) -> str:
    return nfc(username or "").strip().lower()


def _check_username(username: str) -> str:
    name = normalize_username(username)
    if not _USERNAME_RE.match(name):
        raise UserError(
            "Tên đăng nhập dài 2–50 ký tự, chỉ gồm chữ thường không dấu, số, dấu chấm, gạch ngang, gạch dưới.",
            "username",
        )
    return name


def _check_role(role: str) -> str:
    if role not in ROLE_LABELS_VI:
        raise UserError("Vai trò không hợp lệ (quản trị, biên tập hoặc phê duyệt).", "role")
    return role


def check_password(password: str) -> str:
    """Return the password if acceptable, else raise UserError."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LEN:
        raise UserError(f"Mật khẩu phải có ít nhất {MIN_PASSWORD_LEN} ký tự.", "password")
    if len(password) > MAX_PASSWORD_LEN:
        raise UserError(f"Mật khẩu dài tối đa {MAX_PASSWORD_LEN} ký tự.", "password")
    return password


def add_user(
    sessions: sessionmaker[Session],
    username: str,
    password: str,
    role: str,
    display_name: str = "",
) -> UserInfo:
    """Create an account. Raises UserError on a bad name, role, password or a taken name."""
    name = _check_username(username)
    role = _check_role(role)
    check_password(password)
    display = nfc(display_name or "").strip()[:200] or name
    with sessions() as session, session.begin():
        if session.scalar(select(User).where(func.lower(User.username) == name)) is not None:
            raise UserError(f"Tên đăng nhập «{name}» đã có người dùng.", "username")
        user = User(
            username=name, display_name=display, password_hash=generate_password_hash(password), role=role
        )
        session.add(user)
        session.flush()
        info = UserInfo.of(user)
    _LOGGER.info("user %s created with role %s", name, role)
    return info


def authenticate(sessions: sessionmaker[Session], username: str, password: str) -> UserInfo | None:
    """The active account matching these credentials, or None."""
    name = normalize_username(username)
    with sessions() as session:
        user = session.scalar(select(User).where(func.lower(User.username) == name)) if name else None
        if user is None:
            check_password_hash(_DUMMY_HASH, password or "")
            return None
        if not check_password_hash(user.password_hash, password or "") or not user.active:
            return None
        return UserInfo.of(user)


def get_user(sessions: sessionmaker[Session], user_id: int) -> UserInfo | None:
    with sessions() as session:
        user = session.get(User, user_id)
        return None if user is None else UserInfo.of(user)


def list_users(sessions: sessionmaker[Session]) -> list[UserInfo]:
    with sessions() as session:
        return [UserInfo.of(u) for u in session.scalars(select(User).order_by(User.username))]


def count_users(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count(User.id))) or 0)


def _active_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count(User.id)).where(User.role == Role.ADMIN.value, User.active.is_(True))
        )
        or 0
    )


def update_user(
    sessions: sessionmaker[Session],
    user_id: int,
    *,
    role: str | None = None,
    active: bool | None = None,
    display_name: str | None = None,
) -> UserInfo:
    """Change role, active flag or display name. The last active admin cannot lose the role."""
    with sessions() as session, session.begin():
        user = session.get(User, user_id)
        if user is None:
            raise UserError("Không tìm thấy người dùng.")
        was_admin = user.role == Role.ADMIN.value and user.active
        if role is not None:
            user.role = _check_role(role)
        if active is not None:
            user.active = active
        if display_name is not None:
            user.display_name = nfc(display_name).strip()[:200] or user.username
        session.flush()
        if was_admin and _active_admins(session) == 0:
            raise UserError("Phải còn ít nhất một tài khoản quản trị đang hoạt động.", "role")
        info = UserInfo.of(user)
    if not info.active:
        end_user_sessions(sessions, user_id)  # a disabled officer is out everywhere, at once
    return info


def set_password(
    sessions: sessionmaker[Session], user_id: int, password: str, *, keep_session: str | None = None
) -> UserInfo:
    """Set a new password; every session of the account ends (but ``keep_session``, a token: the
    officer who changed their own password stays logged in there)."""
    check_password(password)
    with sessions() as session, session.begin():
        user = session.get(User, user_id)
        if user is None:
            raise UserError("Không tìm thấy người dùng.")
        user.password_hash = generate_password_hash(password)
        info = UserInfo.of(user)
    end_user_sessions(sessions, user_id, keep=keep_session)
    _LOGGER.info("password of user %s changed", user_id)
    return info
