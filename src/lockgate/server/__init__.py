"""The daemon (`lockgate up`): the control-plane API, the gateways and the controllers."""
