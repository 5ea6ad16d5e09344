"""What ran, as data and as a script; web-UI metadata; the result store."""
