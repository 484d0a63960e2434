"""Click options shared by every step that reads or writes the catalog."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from steps.storage import SSE_MODES, open_store
from steps.storage.catalog import Catalog

F = TypeVar("F", bound=Callable[..., Any])

_STORE_FLAGS = ("store", "region", "sse", "sse_kms_key_id", "part_size_mib", "max_buffer_mib", "s3_checksums")


def catalog_options(fn: F) -> F:
    """Add ``--tenant --store --region --sse ...`` and pass ``catalog: Catalog`` (plus ``tenant``)."""

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        flags = {k: kwargs.pop(k) for k in _STORE_FLAGS}
        store = open_store(
            flags["store"],
            region=flags["region"],
            sse=flags["sse"],
            kms_key_id=flags["sse_kms_key_id"],
            part_size_mib=flags["part_size_mib"],
            max_buffer_mib=flags["max_buffer_mib"],
            checksums=flags["s3_checksums"],
        )
        kwargs["catalog"] = Catalog(store, kwargs["tenant"])
        return fn(**kwargs)

    options = [
        click.option("--tenant", envvar="TENANT_DR_TENANT", required=True, help="Tenant name (catalog prefix)."),
        click.option(
            "--store",
            envvar="TENANT_DR_STORE",
            required=True,
            help="Backup store: s3://bucket/prefix or file:///path (S3 endpoint from AWS_ENDPOINT_URL).",
        ),
        click.option("--region", envvar="AWS_REGION", default=None, help="S3 region."),
        click.option(
            "--sse",
            envvar="TENANT_DR_SSE",
            type=click.Choice(SSE_MODES),
            default=None,
            help="Server-side encryption of written objects.",
        ),
        click.option("--sse-kms-key-id", envvar="TENANT_DR_SSE_KMS_KEY_ID", default=None, help="KMS key for aws:kms."),
        click.option(
            "--part-size-mib",
            envvar="TENANT_DR_PART_SIZE_MIB",
            type=int,
            default=16,
            show_default=True,
            help="Base multipart part size; parts grow so ~1 TiB fits in 10,000 parts.",
        ),
        click.option(
            "--max-buffer-mib",
            envvar="TENANT_DR_MAX_BUFFER_MIB",
            type=int,
            default=64,
            show_default=True,
            help="Upload bytes held in memory at once (bounds RSS).",
        ),
        click.option(
            "--s3-checksums",
            envvar="TENANT_DR_S3_CHECKSUMS",
            type=click.Choice(["auto", "when_supported", "when_required"]),
            default="auto",
            show_default=True,
            help="boto3 checksum mode; 'auto' = when_required on custom endpoints (MinIO etc.).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]
