"""Who may see what: access policies now; accounts, health IDs, consent artefacts and audit later."""
