"""Core package of the connector SLA escalation service.

Layout: one sub-package per concern (``sla``, ``alerts``, ``escalation``, ``callbacks``, ``replay``, ``jobs``,
``evidence``, ``dashboard``), each split into models, pure rules and a storage adapter. ``storage`` and ``web`` hold
what they share. Only the storage adapters import boto3.
"""

__version__ = "0.1.0"
