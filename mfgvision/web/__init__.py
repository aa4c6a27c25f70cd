"""What the web apps share: login, API tokens and CSRF protection."""
