"""The runtime's small exception hierarchy; library errors are translated at the boundary."""


class LinewatchError(Exception):
    """Base class of every error the runtime raises on purpose."""


class BundleError(LinewatchError):
    """A bundle that cannot be trusted: bad schema, unknown version, missing or altered artifact."""


class BackendError(LinewatchError):
    """An inference backend that cannot load or run (wrong input, missing library, mismatched engine)."""


class ConfigError(LinewatchError):
    """A runtime configuration that is invalid."""


class BrokerError(LinewatchError):
    """The MQTT broker refused or dropped the connection."""


class StorageError(LinewatchError):
    """A file or database the runtime keeps its state in cannot be opened or written (the message says where and why)."""
