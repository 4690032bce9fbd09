"""Who hears of what about a token: in-app notifications, their emails and the Notifications page."""
