from fhir_server.cli import main

main()
