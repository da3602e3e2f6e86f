"""Authentication and tenant identification: who the client is and which tenant it belongs to."""
