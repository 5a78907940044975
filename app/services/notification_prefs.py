"""What each user wants to hear about (types, minimum priority), when (quiet hours, UTC) and where (in-app
always; a signed webhook optionally). The webhook secret is encrypted at rest and shown only when generated."""
from __future__ import annotations

import re
import secrets
from datetime import datetime, time, timedelta
from urllib.parse import urlsplit

from app.extensions import db
from app.models import NotificationPreference, iso
from app.services import webhook_targets
from app.services.errors import ValidationError
from app.services.notification_rules import NOTIFICATION_TYPES
from app.services.secrets import decrypt_secret, encrypt_secret

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MIN_SECRET = 16


def preference_of(user_id: int) -> NotificationPreference | None:
    return db.session.get(NotificationPreference, user_id)


def allows(pref: NotificationPreference | None, type: str, priority: int | None) -> bool:
    """No preferences: everything. Priority applies to bead notifications only (P0 is 0, so <= min)."""
    if pref is None:
        return True
    if pref.types is not None and type not in pref.types:
        return False
    return priority is None or priority <= pref.min_priority


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def quiet_until(pref: NotificationPreference | None, now: datetime) -> datetime | None:
    """When the user's quiet hours (UTC, may cross midnight) end, if `now` falls inside them; else None."""
    if pref is None or not pref.quiet_start or not pref.quiet_end or pref.quiet_start == pref.quiet_end:
        return None
    start, end, clock = _clock(pref.quiet_start), _clock(pref.quiet_end), now.time().replace(tzinfo=None)
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    end_today = now.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    return end_today if end_today > now else end_today + timedelta(days=1)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("webhook_url must be an http:// or https:// URL with a host", "webhook_url")
    return url


def update_preferences(user_id: int, changes: dict, allow_private_webhooks: bool = False
                       ) -> tuple[NotificationPreference, str | None]:
    """Apply the given fields; returns the preferences and a newly generated webhook secret (else None). A webhook URL
    at a private or local address is refused unless `allow_private_webhooks` (webhook_targets)."""
    pref = preference_of(user_id) or NotificationPreference(user_id=user_id, min_priority=3, webhook_enabled=False)
    if "types" in changes:
        types = changes["types"]
        unknown = sorted(set(types or []) - set(NOTIFICATION_TYPES))
        if unknown:
            raise ValidationError(f"types: unknown {', '.join(unknown)}; known: {', '.join(NOTIFICATION_TYPES)}",
                                  "types")
        pref.types = None if types is None else sorted(set(types))
    if changes.get("min_priority") is not None:
        pref.min_priority = changes["min_priority"]
    for field in ("quiet_start", "quiet_end"):
        if field in changes:
            value = changes[field]
            if value is not None and not HHMM.match(value):
                raise ValidationError(f"{field} must be HH:MM (24-hour, UTC)", field)
            setattr(pref, field, value)
    if bool(pref.quiet_start) != bool(pref.quiet_end):
        raise ValidationError("quiet hours need both quiet_start and quiet_end", "quiet_end")
    if "webhook_url" in changes:
        pref.webhook_url = _check_url(changes["webhook_url"]) if changes["webhook_url"] else None
        problem = None if allow_private_webhooks or not pref.webhook_url else webhook_targets.refusal(pref.webhook_url)
        if problem:
            raise ValidationError(f"webhook_url: {problem}", "webhook_url")
    generated = None
    if changes.get("webhook_secret") is not None:
        if len(changes["webhook_secret"]) < MIN_SECRET:
            raise ValidationError(f"webhook_secret must be at least {MIN_SECRET} characters", "webhook_secret")
        pref.webhook_secret = encrypt_secret(changes["webhook_secret"])
    if changes.get("webhook_enabled") is not None:
        pref.webhook_enabled = changes["webhook_enabled"]
    if pref.webhook_enabled and not pref.webhook_url:
        raise ValidationError("a webhook needs a webhook_url", "webhook_url")
    if pref.webhook_url and not pref.webhook_secret:
        generated = secrets.token_urlsafe(32)
        pref.webhook_secret = encrypt_secret(generated)
    db.session.add(pref)
    db.session.commit()
    return pref, generated


def webhook_secret(pref: NotificationPreference) -> str | None:
    return decrypt_secret(pref.webhook_secret)


def preferences_view(user_id: int, generated_secret: str | None = None) -> dict:
    pref = preference_of(user_id)
    out = {"user_id": user_id, "types": pref.types if pref else None, "min_priority": pref.min_priority if pref else 3,
           "quiet_start": pref.quiet_start if pref else None, "quiet_end": pref.quiet_end if pref else None,
           "webhook_url": pref.webhook_url if pref else None,
           "webhook_enabled": bool(pref and pref.webhook_enabled),
           "webhook_secret_set": bool(pref and pref.webhook_secret),
           "updated_at": iso(pref.updated_at) if pref else None,
           "known_types": list(NOTIFICATION_TYPES)}
    if generated_secret:
        out["webhook_secret"] = generated_secret  # shown once, in the answer that generated it
    return out
