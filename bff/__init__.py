"""The BFF: HTTP/JSON for browsers and any HTTP client, in front of messaging and history."""
