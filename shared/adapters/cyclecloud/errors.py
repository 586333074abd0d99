"""The CycleCloud adapter's domain errors: each says what failed, why, and how to fix it, and never carries a
secret value (service text is scrubbed before it gets here)."""

from __future__ import annotations

from ...errors import CycleCloudError


class CycleCloudNotConfiguredError(CycleCloudError):
    code = "cyclecloud_not_configured"
    status = 400


class CycleCloudUnreachableError(CycleCloudError):
    code = "cyclecloud_unreachable"


class CycleCloudTlsError(CycleCloudError):
    """CycleCloud's certificate is not trusted (self-signed, or signed by a CA the product was not given)."""

    code = "cyclecloud_tls_untrusted"


class CycleCloudLoginError(CycleCloudError):
    code = "cyclecloud_login_rejected"


class CycleCloudLoginPausedError(CycleCloudLoginError):
    """The product refused to try a login because the last one for this server and user failed recently."""

    code = "cyclecloud_login_paused"


class CycleCloudLockedOutError(CycleCloudError):
    code = "cyclecloud_user_locked"


class CycleCloudForbiddenError(CycleCloudError):
    code = "cyclecloud_forbidden"


class CycleCloudAccountMissingError(CycleCloudError):
    code = "cyclecloud_account_missing"


class CycleCloudEndpointError(CycleCloudError):
    """The server does not answer the configured credential endpoint the way the product expects."""

    code = "cyclecloud_endpoint_unsupported"


class CycleCloudUpdateRejectedError(CycleCloudError):
    code = "cyclecloud_update_rejected"


class CycleCloudReadBackMismatchError(CycleCloudError):
    code = "cyclecloud_readback_mismatch"


class CycleCloudRunCommandError(CycleCloudError):
    code = "cyclecloud_runcommand_failed"
