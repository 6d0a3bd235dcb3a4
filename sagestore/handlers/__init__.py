"""Thin HTTP adapters: parse the request, call acl/storage/engine, render JSON."""
