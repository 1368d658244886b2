"""Who may see what: 14-digit health IDs and health cards, accounts and sign-in (password + OTP),
access tokens and system clients, enrollment, and the access policy the FHIR service applies."""
