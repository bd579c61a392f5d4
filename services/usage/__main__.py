from services.usage.bootstrap import main

main()
