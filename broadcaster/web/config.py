"""Settings of the web interface and the REST API."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approval_required: bool = Field(
        True,
        description="An editor's normal announcement airs only once approved. Default of the admin "
        "settings page (Setting row 'approval_required'), which wins once saved.",
    )
    cookie_secure: bool | None = Field(
        None,
        description="Mark the session cookie Secure. None: Secure whenever the request came over https "
        "(behind a proxy, set trusted_proxies so X-Forwarded-Proto is believed).",
    )
    trusted_proxies: int = Field(
        0,
        ge=0,
        le=5,
        description="Number of reverse proxies in front whose X-Forwarded-* headers are trusted.",
    )
    session_hours: int = Field(12, ge=1, le=24 * 30, description="An officer stays logged in this long.")
    # HTTPS (live speech: browsers open the microphone only on secure pages or localhost).
    https: bool = Field(
        False,
        description="Serve the web interface over HTTPS (cheroot). Without tls_cert_file/tls_key_file the "
        "instance's own certificate (signed by its local CA, as for the broker) is used.",
    )
    tls_cert_file: Path | None = Field(
        None, description="An operator's certificate (PEM, full chain) for HTTPS."
    )
    tls_key_file: Path | None = Field(None, description="The private key (PEM) of tls_cert_file.")
    login_max_failures: int = Field(
        5, ge=1, le=100, description="Failed logins per username and address before a lock."
    )
    login_max_failures_per_address: int = Field(
        20,
        ge=1,
        le=1000,
        description="Failed logins from one address, any usernames, before that address is locked.",
    )
    login_max_failures_per_user: int = Field(
        10,
        ge=1,
        le=1000,
        description="Failed logins for one username, from any addresses, before it is locked.",
    )
    login_lock_s: int = Field(
        300, ge=1, description="Failures count inside this many seconds; a lock lasts as long."
    )
    preview_workers: int = Field(
        1, ge=1, le=8, description="Threads rendering previews (synthesis is CPU-bound; keep it small)."
    )
    poll_interval_s: float = Field(2.0, gt=0, le=60, description="How often the dashboard refreshes itself.")
    max_upload_mb: int = Field(50, ge=1, le=500, description="Largest document or recording accepted.")
