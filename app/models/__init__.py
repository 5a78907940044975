"""SQLAlchemy models split by domain; importing this package registers every table."""
from app.models.activity import Activity, Notification, NotificationPreference, WebhookDelivery
from app.models.agents import AGENT_STATUSES, Agent, Persona
from app.models.analytics import LLMRequest, ModelPrice
from app.models.base import iso, utcnow
from app.models.budgets import Budget, BudgetReservation
from app.models.beads import BEAD_STATUSES, BEAD_TYPES, ERROR_HISTORY_KEEP, Bead, BeadDependency, BeadTag, Comment
from app.models.motivations import MOTIVATION_KINDS, Motivation, MotivationFiring
from app.models.projects import GIT_STRATEGIES, Project
from app.models.providers import PROVIDER_STATUSES, Provider, mask_secret
from app.models.runs import RUN_STATUSES, Run, Step
from app.models.security import ApiKey, SecurityEvent
from app.models.system import ConfigKV, LogEntry
from app.models.users import ROLES, User

__all__ = [
    "AGENT_STATUSES", "BEAD_STATUSES", "BEAD_TYPES", "ERROR_HISTORY_KEEP", "GIT_STRATEGIES", "PROVIDER_STATUSES",
    "ROLES", "RUN_STATUSES", "Agent", "Bead", "BeadDependency", "BeadTag", "Comment", "ConfigKV", "LogEntry",
    "Persona", "Project", "Provider", "Run", "Step", "User", "iso", "mask_secret", "utcnow", "ApiKey",
    "SecurityEvent", "Activity", "Notification", "NotificationPreference", "WebhookDelivery", "LLMRequest",
    "ModelPrice", "Budget", "BudgetReservation", "MOTIVATION_KINDS", "Motivation", "MotivationFiring",
]
