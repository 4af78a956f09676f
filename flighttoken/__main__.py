from flighttoken.cli import main

raise SystemExit(main())
