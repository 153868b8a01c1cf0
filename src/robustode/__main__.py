from robustode.cli import main

raise SystemExit(main())
