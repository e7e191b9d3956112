"""A sign-in service for Amazon Chime SDK messaging clients.

It exchanges a user's JWT from their identity provider for an `AppInstanceUser`
and short-lived AWS credentials scoped to that user.
"""
