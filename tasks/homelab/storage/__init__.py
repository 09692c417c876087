"""Storage under the apps beyond K3S's local-path: the Longhorn option (``options.longhorn``)."""
