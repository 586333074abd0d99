"""CycleCloud Credential Remediator: the library behind the Function app and the CLI."""

__version__ = "0.1.0"
PRODUCT = "cyclecloud-credential-remediator"
