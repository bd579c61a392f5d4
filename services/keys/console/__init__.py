"""The browser console of the key service: Account Settings > InstaGen Access Key."""
