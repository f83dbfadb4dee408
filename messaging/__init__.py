"""Messaging: the gRPC server clients send through and receive live events from."""
