"""Small Graph models for the reads that $select a few attributes: an application (id, appId, displayName,
passwordCredentials) and a service principal (id, appId, displayName). msgraph-sdk's full `Application` and
`ServicePrincipal` models import the whole model graph (about 1,200 modules, over a second of CPU) the first
time a process parses one; these parse the same JSON through the same kiota pipeline with only
`PasswordCredential` behind them. Use them with the SDK's own request builders:

    info = builder.to_get_request_information(request_configuration=config)
    model = await adapter.send_async(info, SelectedApplication, error_mapping())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kiota_abstractions.serialization import Parsable, ParseNode, SerializationWriter

if TYPE_CHECKING:
    from msgraph.generated.models.password_credential import PasswordCredential


def error_mapping() -> dict[str, Any]:
    """What msgraph's builders pass for errors: every 4XX/5XX answer parsed as an ODataError (raised)."""
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    return {"XXX": ODataError}


@dataclass
class SelectedApplication(Parsable):
    """The attributes of an application the product selects (same names as msgraph's `Application`)."""

    id: str | None = None
    app_id: str | None = None
    display_name: str | None = None
    password_credentials: list[PasswordCredential] | None = None
    additional_data: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode) -> SelectedApplication:
        if parse_node is None:
            raise TypeError("parse_node cannot be null.")
        return SelectedApplication()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        from msgraph.generated.models.password_credential import PasswordCredential

        return {
            "id": lambda n: setattr(self, "id", n.get_str_value()),
            "appId": lambda n: setattr(self, "app_id", n.get_str_value()),
            "displayName": lambda n: setattr(self, "display_name", n.get_str_value()),
            "passwordCredentials": lambda n: setattr(
                self, "password_credentials", n.get_collection_of_object_values(PasswordCredential)),
        }

    def serialize(self, writer: SerializationWriter) -> None:
        raise NotImplementedError("SelectedApplication is read-only")  # the product never writes one


@dataclass
class SelectedServicePrincipal(Parsable):
    """The attributes of a service principal the product selects (same names as msgraph's `ServicePrincipal`)."""

    id: str | None = None
    app_id: str | None = None
    display_name: str | None = None
    additional_data: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode) -> SelectedServicePrincipal:
        if parse_node is None:
            raise TypeError("parse_node cannot be null.")
        return SelectedServicePrincipal()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {
            "id": lambda n: setattr(self, "id", n.get_str_value()),
            "appId": lambda n: setattr(self, "app_id", n.get_str_value()),
            "displayName": lambda n: setattr(self, "display_name", n.get_str_value()),
        }

    def serialize(self, writer: SerializationWriter) -> None:
        raise NotImplementedError("SelectedServicePrincipal is read-only")
