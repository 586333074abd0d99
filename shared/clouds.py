"""The Azure clouds the product can run against and the endpoints each one uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AzureCloud:
    name: str
    login: str
    graph: str
    arm: str
    vault_suffix: str
    cyclecloud_environment: str  # the `Environment` field of a CycleCloud account record

    @property
    def arm_scope(self) -> str:
        return f"{self.arm}/.default"

    @property
    def graph_scope(self) -> str:
        return f"{self.graph}/.default"


CLOUDS: dict[str, AzureCloud] = {
    "AzureCloud": AzureCloud(
        name="AzureCloud",
        login="https://login.microsoftonline.com",
        graph="https://graph.microsoft.com",
        arm="https://management.azure.com",
        vault_suffix=".vault.azure.net",
        cyclecloud_environment="public",
    ),
    "AzureUSGovernment": AzureCloud(
        name="AzureUSGovernment",
        login="https://login.microsoftonline.us",
        graph="https://graph.microsoft.us",
        arm="https://management.usgovcloudapi.net",
        vault_suffix=".vault.usgovcloudapi.net",
        cyclecloud_environment="usgov",
    ),
    "AzureChinaCloud": AzureCloud(
        name="AzureChinaCloud",
        login="https://login.chinacloudapi.cn",
        graph="https://microsoftgraph.chinacloudapi.cn",
        arm="https://management.chinacloudapi.cn",
        vault_suffix=".vault.azure.cn",
        cyclecloud_environment="china",
    ),
}
