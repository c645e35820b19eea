"""The network around the node: its models, their block coverage and servers (read from the DHT)."""
