from touchpoints.cli import main

raise SystemExit(main())
