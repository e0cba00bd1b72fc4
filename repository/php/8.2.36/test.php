<?php
$input = stream_get_contents(STDIN);
$parts = array("O", "K");
if (is_string($input) && count($argv) >= 1) {
    echo implode("", $parts) . "\n";
}
